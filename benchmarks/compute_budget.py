"""GPU-hours saved by the cell-level convergence stop, and what it costs in quality.

    python benchmarks/compute_budget.py [--seeds 4] [--patience 5] [--min-delta 0.005]

8 cells of the landscape stub (benchmarks/landscape_app): 4 easy ones, nearly flat, whose best is
reached within about 3 trials, and 4 hard ones with a narrow peak that keep improving up to 16
trials. Each trial stands for one GPU for its duration. Two ways to spend the budget, on the same
cells and sampler seeds:
  uniform     n_trials=16 for every cell
  convergence n_trials=16, and a cell stops once its best has not improved by more than min_delta
              over `patience` finished trials (hydra.sweeper.budget.patience / min_delta)
Prints, averaged over the seeds: trials, GPU-hours (the sweeper's own accounting), and the mean
normalised best value over the cells (scores are in [0, 1] with an optimum of 1, so the best value
is already normalised). Goal: at least 30 % fewer GPU-hours for a mean best within 1 %.
"""

from __future__ import annotations

import argparse
import statistics

from landscape_app.run import cells, sweep

DIFFICULTIES = "0.2,0.4,0.6,1,100,200,400,800"  # easy (flat) ... hard (narrow peak)


def measure(seed: int, extra: list[str]) -> tuple[int, float, float]:
    rows = sweep(f"task.difficulty={DIFFICULTIES}", f"hydra.sweeper.sampler.seed={seed}", *extra)
    best = [max(float(r["value"]) for r in mine if r["value"]) for mine in cells(rows).values()]
    return len(rows), sum(float(r["gpu_hours"]) for r in rows), statistics.mean(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--min-delta", type=float, default=0.005)
    args = parser.parse_args()
    ways = {
        "uniform": [],
        "convergence": [
            f"hydra.sweeper.budget.patience={args.patience}",
            f"hydra.sweeper.budget.min_delta={args.min_delta}",
        ],
    }
    results = {name: [measure(seed, extra) for seed in range(args.seeds)] for name, extra in ways.items()}
    print(
        f"8 cells, n_trials=16, {args.seeds} sampler seeds; convergence: patience={args.patience}, "
        f"min_delta={args.min_delta}"
    )
    print(f"{'':12} {'trials':>7} {'GPU-hours':>10} {'mean best':>10}")
    means = {}
    for name, runs in results.items():
        means[name] = [statistics.mean(column) for column in zip(*runs)]
        trials, gpu_hours, best = means[name]
        print(f"{name:12} {trials:7.1f} {gpu_hours:10.5f} {best:10.4f}")
    saved = 1 - means["convergence"][1] / means["uniform"][1]
    change = means["convergence"][2] / means["uniform"][2] - 1
    print(
        f"convergence stopping: {saved:.0%} fewer GPU-hours, mean best {change:+.2%} "
        f"(goal: >= 30 % fewer, within 1 %: {'met' if saved >= 0.30 and abs(change) <= 0.01 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
