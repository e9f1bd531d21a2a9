"""k-fold tuning against a single validation split, on a synthetic task with a small training set.

    python benchmarks/kfold_vs_single_split.py [--seeds 1,2] [--lrs 1e-5,3e-4,3e-3] [--epochs 2]

The embedded synthetic_cls task (32 training, 16 validation, 16 test 64x64 GeoTIFF tiles, 3
classes), the tiny Prithvi from random init. The configurations are a fixed set of learning rates
(each a cell, so every configuration is scored by both methods and tested), per training seed:
  single   a seed repeat of each configuration (python -m bench, repeats=1, nothing searched):
           trained on the whole training split, its best validation value on the validation split
           (val_value: what a single-split tuning trial scores) and its test value on the best checkpoint
  k-fold   one tuning trial of each configuration with hydra.sweeper.folds=3: the mean over folds
Prints, per method, the Spearman rank correlation between validation and test over the
configurations (all seeds pooled, and per seed), and the test value of the configuration each
method picks (the best validation value) per seed, with its mean and standard deviation.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = [
    "task=synthetic_cls",
    "model=prithvi_tiny",
    "model.model_args.backbone_pretrained=false",
    "search_space=none",
    "hparams.batch_size=8",
    "hydra.sweeper.n_jobs=1",
]


def bench(sweep: Path, *args: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "-m", *COMMON, *args, f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        cwd=sweep.parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench failed:\n{done.stderr[-3000:]}")
    table = sweep / ("repeats.csv" if "hydra.sweeper.repeats=1" in args else "results.csv")
    with open(table) as f:
        return list(csv.DictReader(f))


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx, sy = (sum((a - mx) ** 2 for a in rx) ** 0.5), (sum((b - my) ** 2 for b in ry) ** 0.5)
    return cov / (sx * sy) if sx and sy else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--lrs", default="1e-5,3e-4,3e-3")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="kfold_bench_"))
    os.environ.setdefault("BENCH_DATA_DIR", str(work / "data"))
    epochs = [f"task.max_epochs={args.epochs}", f"task.patience={args.epochs}", f"hparams.lr={args.lrs}"]
    pooled: dict[str, tuple[list[float], list[float]]] = {"single": ([], []), "k-fold": ([], [])}
    picked: dict[str, list[float]] = {"single": [], "k-fold": []}
    for seed in seeds:
        repeats = bench(work / f"single_{seed}", *epochs, "hydra.sweeper.repeats=1", f"hydra.sweeper.seeds=[{seed}]")
        test = {r["hparams.lr"]: float(r["test_value"]) for r in repeats}
        single = {r["hparams.lr"]: float(r["val_value"]) for r in repeats}
        tuned = bench(
            work / f"kfold_{seed}",
            *epochs,
            "hydra.sweeper.n_trials=1",
            f"hydra.sweeper.folds={args.folds}",
            f"seed={seed}",
        )
        kfold = {r["hparams.lr"]: float(r["value"]) for r in tuned}
        print(f"seed {seed}: lr -> (single-split val, {args.folds}-fold val, test)")
        for lr in sorted(test, key=float):
            print(f"  {lr:>8}  {single[lr]:.3f}  {kfold[lr]:.3f}  {test[lr]:.3f}")
        for name, val in (("single", single), ("k-fold", kfold)):
            lrs = sorted(test, key=float)
            pooled[name][0].extend(val[lr] for lr in lrs)
            pooled[name][1].extend(test[lr] for lr in lrs)
            best = max(lrs, key=lambda lr: (val[lr], -float(lr)))  # ties: the smaller rate
            picked[name].append(test[best])
            print(
                f"  {name}: Spearman(val, test) {spearman([val[lr] for lr in lrs], [test[lr] for lr in lrs]):.3f}, picks lr={best} (test {test[best]:.3f})"
            )
    print(
        f"\n{len(seeds)} seed(s), {len(args.lrs.split(','))} configurations, {args.epochs} epochs, {args.folds} folds"
    )
    for name in ("single", "k-fold"):
        tests = picked[name]
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(
            f"{name:>7}: Spearman(val, test), seeds pooled {spearman(*pooled[name]):.3f}; test of the picked "
            f"configuration {statistics.fmean(tests):.3f} +- {std:.3f} (std over seeds)"
        )
    print(f"(sweeps in {work})")


if __name__ == "__main__":
    main()
