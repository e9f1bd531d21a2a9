"""Linear-probe tuning on cached embeddings against frozen fine-tuning, per trial, on one synthetic task.

    python benchmarks/probe_vs_frozen.py [--trials 16] [--task synthetic_cls]

Three sweeps of one cell (the tiny Prithvi from random init, the embedded task's GeoTIFF tiles, one trial at a
time on the local launcher, no pruning, no repeats, MLflow off), each with `--trials` tuning trials:
  linear_probe  protocol=linear_probe: the first trial embeds the training and validation splits into a
                fresh cache (embeddings.cache_dir in a temporary folder); every other trial reads them
  frozen        protocol=frozen embeddings.frozen_features=false: the FCN decoder trained on the frozen
                encoder end to end, every trial from the tiles
  frozen cached protocol=frozen (embeddings.frozen_features=auto): the same decoder trained on the encoder's
                cached features (bench.probes.frozen), encoded by the first trial into a fresh cache
Per trial, from results.csv (duration_s, and cpu_hours as bench accounts it: the grant x the run time):
the probe trials that read the cache; the embedding pass on its own (the cache entries' meta.json: wall
and CPU seconds of the pass, counted once); the probe's amortised cost (all its trials, the embedding pass
included once, over the trial count); the frozen trials; the cached-features frozen trials (those that read
the cache, and all of them); and the ratios frozen / probe and frozen / frozen cached.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["model=prithvi_tiny", "model.model_args.backbone_pretrained=false", "pruning=none", "mlflow.enabled=false"]


def sweep(where: Path, task: str, trials: int, *args: str) -> tuple[list[dict[str, str]], float]:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "-m",
            f"task={task}",
            *COMMON,
            f"hydra.sweeper.n_trials={trials}",
            *args,
            f"hydra.sweep.dir={where}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    if done.returncode != 0:
        sys.exit(f"the sweep failed:\n{done.stderr[-3000:]}")
    with open(where / "results.csv", newline="") as f:
        return list(csv.DictReader(f)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--task", default="synthetic_cls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        probe, probe_total = sweep(
            root / "probe", args.task, args.trials, "protocol=linear_probe", f"embeddings.cache_dir={cache}"
        )
        frozen, frozen_total = sweep(
            root / "frozen", args.task, args.trials, "protocol=frozen", "embeddings.frozen_features=false"
        )
        cached, cached_total = sweep(
            root / "cached", args.task, args.trials, "protocol=frozen", f"embeddings.cache_dir={root / 'fcache'}"
        )
        metas = [json.loads(p.read_text()) for p in cache.glob("*/meta.json")]
        frozen_metas = [json.loads(p.read_text()) for p in (root / "fcache").glob("*/meta.json")]
    assert all(r["state"] == "COMPLETE" for r in probe + frozen + cached), "every trial should complete"
    cached_built = [int(r["embeddings_built"]) for r in cached]
    assert sum(cached_built) == cached_built[0] == len(frozen_metas), f"frozen features built again: {cached_built}"
    built = [int(r["embeddings_built"]) for r in probe]
    assert built[0] == len(metas) and sum(built) == len(metas), f"the embedding pass ran more than once: {built}"

    def per_trial(rows: list[dict[str, str]]) -> tuple[float, float]:
        return (
            statistics.mean(float(r["duration_s"]) for r in rows),
            statistics.mean(float(r["cpu_hours"]) for r in rows),
        )

    hits = [r for r in probe if int(r["embeddings_built"]) == 0]
    hit_wall, hit_cpu = per_trial(hits)
    amortised_wall, amortised_cpu = per_trial(probe)  # the building trial carries the pass, once
    frozen_wall, frozen_cpu = per_trial(frozen)
    pass_wall = sum(m["wall_s"] for m in metas)
    pass_cpu_s = sum(m["cpu_s"] for m in metas)
    # The pass counted once, on its own: the first trial's duration also holds the torch/TerraTorch import and
    # the model build, which the frozen sweep's first trial pays too.
    cpus = hit_cpu * 3600 / hit_wall  # bench's accounting: the grant x the run time
    once_wall = hit_wall + pass_wall / args.trials
    once_cpu = hit_cpu + pass_wall * cpus / 3600 / args.trials
    print(f"task={args.task} model=prithvi_tiny (random init), {args.trials} tuning trials each, one at a time")
    print(f"{'':34}{'wall s/trial':>14}{'CPU-h/trial':>14}")
    print(f"{'linear probe, cache hit':34}{hit_wall:14.3f}{hit_cpu:14.6f}   ({len(hits)} trials)")
    print(f"{'linear probe, amortised':34}{amortised_wall:14.3f}{amortised_cpu:14.6f}   (the embedding pass once)")
    print(f"{'linear probe, hits + pass once':34}{once_wall:14.3f}{once_cpu:14.6f}   (the pass alone, over the trials)")
    print(f"{'frozen fine-tuning':34}{frozen_wall:14.3f}{frozen_cpu:14.6f}")
    print(
        f"embedding pass (once, {len(metas)} splits): {pass_wall:.2f} s wall, {pass_cpu_s:.2f} s CPU in the pass; "
        f"the building trial: {float(probe[0]['duration_s']):.2f} s (with the model build)"
    )
    print(
        f"frozen / probe per trial: {frozen_wall / hit_wall:.0f}x wall and {frozen_cpu / hit_cpu:.0f}x CPU-h on a cache "
        f"hit; {frozen_wall / once_wall:.1f}x wall and {frozen_cpu / once_cpu:.1f}x CPU-h with the pass once; "
        f"{frozen_wall / amortised_wall:.1f}x wall and {frozen_cpu / amortised_cpu:.1f}x CPU-h with the whole first trial"
    )
    cached_hit_wall, cached_hit_cpu = per_trial([r for r in cached if int(r["embeddings_built"]) == 0])
    cached_wall, cached_cpu = per_trial(cached)
    print(f"{'frozen, cached features, hit':34}{cached_hit_wall:14.3f}{cached_hit_cpu:14.6f}")
    print(f"{'frozen, cached features, all':34}{cached_wall:14.3f}{cached_cpu:14.6f}   (the encoder pass once)")
    print(
        f"frozen encoder pass (once, {len(frozen_metas)} splits): {sum(m['wall_s'] for m in frozen_metas):.2f} s "
        f"wall; embeddings_built per trial: {cached_built}"
    )
    print(
        f"frozen end to end / cached features per trial: {frozen_wall / cached_wall:.1f}x wall and "
        f"{frozen_cpu / cached_cpu:.1f}x CPU-h (all trials); {frozen_wall / cached_hit_wall:.1f}x wall on a hit"
    )
    print(
        f"whole sweeps (with the driver's start): probe {probe_total:.0f} s, frozen {frozen_total:.0f} s, "
        f"frozen cached {cached_total:.0f} s"
    )


if __name__ == "__main__":
    main()
