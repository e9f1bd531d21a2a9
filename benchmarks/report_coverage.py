"""Coverage of the report's 95 % intervals at 5 seeds: the percentile bootstrap it used, and what it
uses now (bench/report/intervals.py).

    python benchmarks/report_coverage.py [--simulations 2000] [--resamples 1000] [--seed 0]

Seed scores are drawn from known distributions, so the true value is known: the population IQM (the
25 % trimmed mean, by integration; for a group, of the equal mixture of its datasets). Each
simulation is one model's table row; coverage is the share of simulations whose interval holds the
truth (goal: 0.95; its standard error at 2000 simulations is about 0.005).
  per dataset  5 seeds: percentile bootstrap (before), BCa, Yuen's trimmed-mean interval (now)
  per group    6 (and 2) datasets x 5 seeds, pooled IQM, seeds resampled within each dataset:
               percentile (before), BCa, studentised bootstrap (now)
  P(A > B)     6 (and 1) datasets x 5 seeds each, normal, A shifted by delta: percentile (kept)
Distributions: normal, Student's t(3) (heavy tails), lognormal (right skew), beta(8, 2) (left skew,
bounded, as accuracies near a ceiling).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import optimize, stats

from bench.report.intervals import CONFIDENCE, iqm, studentized, yuen

SEEDS = 5
SCALE = 0.05
SHAPES = {
    "normal": lambda m: stats.norm(m, SCALE),
    "t3": lambda m: stats.t(3, loc=m, scale=SCALE),
    "lognormal": lambda m: stats.lognorm(0.5, loc=m - 0.1, scale=0.1),
    "beta(8,2)": lambda m: stats.beta(8, 2, loc=m - 0.8 * 0.25, scale=0.25),
}
CHUNK = 200  # simulations resampled at once (memory: CHUNK x resamples x seeds)


def truth(mixture: list) -> float:
    cdf = lambda x: np.mean([d.cdf(x) for d in mixture])  # noqa: E731
    low, high = (optimize.brentq(lambda x, q=q: cdf(x) - q, -20, 20, xtol=1e-12) for q in (0.25, 0.75))
    return float(np.mean([d.expect(lambda x: x, lb=low, ub=high) for d in mixture]) / 0.5)


def _pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return iqm(np.concatenate(samples, axis=axis), axis=axis)


def scipy_interval(strata: list[np.ndarray], method: str, resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """scipy's bootstrap over each simulation (leading axis), as the report called it before."""
    result = stats.bootstrap(
        strata,
        _pooled,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method=method,
        vectorized=True,
        axis=-1,
        batch=50,
        random_state=rng,
    )
    return result.confidence_interval.low, result.confidence_interval.high


def new_interval(strata: list[np.ndarray], resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    if len(strata) == 1:
        return yuen(strata[0])
    low, high, _ = studentized(strata, resamples, rng)
    return low, high


def coverage(mixture: list, simulations: int, method: str, resamples: int, rng) -> float:
    value, hits = truth(mixture), 0
    for start in range(0, simulations, CHUNK):
        size = min(CHUNK, simulations - start)
        strata = [d.rvs(size=(size, SEEDS), random_state=rng) for d in mixture]
        low, high = (
            new_interval(strata, resamples, rng) if method == "new" else scipy_interval(strata, method, resamples, rng)
        )
        hits += int(np.sum((low <= value) & (value <= high)))
    return hits / simulations


def improvement_coverage(datasets: int, delta: float, simulations: int, resamples: int, rng) -> float:
    """P(A > B) averaged over datasets, percentile CI of the stratified bootstrap (stats.pair_table's)."""
    means = np.linspace(0.3, 0.8, datasets)
    target = stats.norm.cdf(delta / (SCALE * np.sqrt(2)))
    hits = 0
    for _ in range(simulations):
        a = rng.normal(means[:, None] + delta, SCALE, (datasets, SEEDS))
        b = rng.normal(means[:, None], SCALE, (datasets, SEEDS))
        pick_a, pick_b = (rng.integers(SEEDS, size=(resamples, datasets, SEEDS)) for _ in range(2))
        ra, rb = np.take_along_axis(a[None], pick_a, -1), np.take_along_axis(b[None], pick_b, -1)
        wins = ra[..., :, None] - rb[..., None, :]
        p = ((wins > 0) + 0.5 * (wins == 0)).mean(axis=(-1, -2)).mean(axis=-1)
        low, high = np.percentile(p, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
        hits += low <= target <= high
    return hits / simulations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"coverage of 95 % intervals, {SEEDS} seeds, {args.simulations} simulations, {args.resamples} resamples")
    print(f"{'':34}{'percentile (before)':>21}{'BCa':>8}{'now':>8}")
    scenarios = [
        ("per dataset", [0.6]),
        ("per group, 6 datasets", list(np.linspace(0.3, 0.8, 6))),
        ("per group, 2 datasets", [0.5, 0.6]),
    ]
    for title, means in scenarios:
        for shape, make in SHAPES.items():
            mixture = [make(m) for m in means]
            row = [
                coverage(mixture, args.simulations, method, args.resamples, rng)
                for method in ("percentile", "BCa", "new")
            ]
            print(f"{title + ', ' + shape:34}{row[0]:>21.3f}{row[1]:>8.3f}{row[2]:>8.3f}", flush=True)
    print("now: Yuen's interval per dataset, the stratified studentised bootstrap per group")
    print(f"\nP(A > B), normal, percentile bootstrap (kept), {args.simulations // 4} simulations")
    for datasets in (1, 6):
        for delta in (0.0, 0.03, 0.07):
            value = improvement_coverage(datasets, delta, args.simulations // 4, args.resamples, rng)
            print(
                f"  {datasets} dataset(s), A - B = {delta:.2f} (P = {stats.norm.cdf(delta / (SCALE * 2**0.5)):.2f})"
                f": {value:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
