"""Trials saved by warm starts across cells with correlated optima.

    python benchmarks/warm_start.py [--seeds 5] [--top-k 3]

6 cells of the landscape stub (benchmarks/landscape_app), all with the same narrow peak shifted a
little per cell (task.shift), as one model's good hyperparameters are close across tasks. The same
cells and sampler seeds are tuned twice, 12 trials per cell, one trial at a time:
  cold        every cell's study starts from scratch
  siblings    hydra.sweeper.warm_start=siblings (sibling_key=task.shift): a new cell first tries
              the best `top_k` configurations of the cells tuned before it
Prints, averaged over the seeds, the trials a cell needs before its best reaches 95 % of the best
value that cell reached in any run (cells that never get there count as n_trials + 1), for all
cells and for the cells that had siblings to start from (all but the first), and the mean best.
"""

from __future__ import annotations

import argparse
import statistics

from landscape_app.run import cells, sweep

SHIFTS = "0.0,0.01,0.02,0.03,0.04,0.05"
N_TRIALS = 12
DIFFICULTY = 30  # a peak about a fifth of the range wide


def trajectories(seed: int, extra: list[str]) -> dict[str, list[float]]:
    rows = sweep(
        f"task.shift={SHIFTS}",
        f"task.difficulty={DIFFICULTY}",
        f"hydra.sweeper.n_trials={N_TRIALS}",
        f"hydra.sweeper.sampler.seed={seed}",
        "sleep=0",
        *extra,
    )
    return {cell: [float(r["value"]) for r in mine] for cell, mine in cells(rows).items()}


def trials_to_reach(values: list[float], target: float) -> int:
    best = 0.0
    for n, value in enumerate(values, 1):
        best = max(best, value)
        if best >= target:
            return n
    return len(values) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    ways = {
        "cold": [],
        "siblings": [
            "hydra.sweeper.warm_start=siblings",
            "hydra.sweeper.sibling_key=task.shift",
            f"hydra.sweeper.warm_start_top_k={args.top_k}",
        ],
    }
    runs = {name: [trajectories(seed, extra) for seed in range(args.seeds)] for name, extra in ways.items()}
    labels = list(runs["cold"][0])
    reference = {c: max(max(run[c]) for way in runs.values() for run in way) for c in labels}
    print(
        f"{len(labels)} cells with correlated optima, {N_TRIALS} trials each, {args.seeds} sampler seeds, top_k={args.top_k}"
    )
    print(f"{'':10} {'trials to 95 % (all cells)':>27} {'(warm-started cells)':>21} {'mean best':>10}")
    means = {}
    for name, way in runs.items():
        needed = [[trials_to_reach(run[c], 0.95 * reference[c]) for c in labels] for run in way]
        means[name] = statistics.mean(n for per_run in needed for n in per_run)
        later = statistics.mean(n for per_run in needed for n in per_run[1:])
        best = statistics.mean(max(run[c]) for run in way for c in labels)
        print(f"{name:10} {means[name]:27.2f} {later:21.2f} {best:10.4f}")
    print(f"warm starts: {1 - means['siblings'] / means['cold']:.0%} fewer trials to reach 95 % of the best")


if __name__ == "__main__":
    main()
