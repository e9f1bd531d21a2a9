"""95 % confidence intervals for interquartile means (IQM, the 25 % trimmed mean) at a few seeds.

Chosen by measuring coverage of the population IQM at 5 seeds, 2000 simulations each
(benchmarks/report_coverage.py: normal, t(3), lognormal and beta(8, 2) seed scores):
  - one model x dataset: Yuen's trimmed-mean t interval, IQM +- t(h - 1) sqrt(SSw / (h (h - 1))),
    SSw the sum of squared deviations of the winsorised seeds and h the number the trim keeps.
    Covers 0.943 (normal), 0.951 (t3), 0.935 and 0.926 (skewed); the percentile bootstrap the
    report used covered 0.895-0.909, BCa 0.884-0.897, a studentised bootstrap 0.90-0.92 when tried:
    five values give too few distinct resamples for any bootstrap.
  - a group (the IQM of the pooled seed scores of several datasets, seeds resampled within each
    dataset): a stratified studentised bootstrap (bootstrap-t). Each resample is studentised by
    the standard error of the pooled trimmed mean, sqrt(sum_d n_d s_d^2) / h, s_d^2 the variance
    within dataset d of the seeds winsorised at the pooled trim points. Covers 0.949-0.962 with 6
    datasets, 0.960-0.970 with 2 (conservative); percentile 0.881-0.903, BCa 0.862-0.897. A group
    of one dataset gets Yuen's interval, the dataset's own.
Every function works along the last axis, leading axes being independent batches (the coverage
test simulates thousands of models at once).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

TRIM = 0.25  # IQM: the mean of the middle 50 %
CONFIDENCE = 0.95


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(values, TRIM, axis=axis)


def _kept(n: int) -> tuple[int, int]:
    """(g, h): values trimmed from each end, as scipy's trim_mean counts them, and values kept."""
    cut = int(TRIM * n)
    return cut, n - 2 * cut


def _winsorised(values: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """`values` clipped to the trim points of `pooled` (same leading axes)."""
    cut, _ = _kept(pooled.shape[-1])
    ordered = np.sort(pooled, axis=-1)
    low, high = ordered[..., cut : cut + 1], ordered[..., pooled.shape[-1] - cut - 1 : pooled.shape[-1] - cut]
    return np.clip(values, low, high)


def yuen(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of Yuen's interval for the IQM; NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    if n < 2:
        empty = np.full(values.shape[:-1], np.nan)
        return empty, empty.copy()
    _, kept = _kept(n)
    winsorised = _winsorised(values, values)
    squares = ((winsorised - winsorised.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, kept - 1) * np.sqrt(squares / (kept * (kept - 1)))
    centre = iqm(values)
    return centre - half, centre + half


def pooled_iqm(strata: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The IQM of the pooled strata and its standard error (see the module's docstring)."""
    pooled = np.concatenate(strata, axis=-1)
    _, kept = _kept(pooled.shape[-1])
    spread = sum(s.shape[-1] * _winsorised(s, pooled).var(axis=-1, ddof=1) for s in strata)
    return iqm(pooled), np.sqrt(spread) / kept


def studentized(
    strata: list[np.ndarray], n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, se) for the pooled IQM of `strata`, seeds resampled within each stratum; `se`
    is the bootstrap standard error of the IQM. NaN where a stratum has a single value."""
    strata = [np.asarray(s, dtype=float) for s in strata]
    batch = strata[0].shape[:-1]
    if any(s.shape[-1] < 2 for s in strata):
        empty = np.full(batch, np.nan)
        return empty, empty.copy(), empty.copy()
    resampled = [s[..., rng.integers(s.shape[-1], size=(n_resamples, s.shape[-1]))] for s in strata]
    values, errors = pooled_iqm(resampled)
    se = values.std(axis=-1, ddof=1) if n_resamples > 1 else np.full(batch, np.nan)
    if len(strata) == 1:
        return *yuen(strata[0]), se
    centre, error = pooled_iqm(strata)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A resample without spread has no studentised value: it is left out, not counted as 0 or inf.
        t = np.where(errors > 0, (values - centre[..., None]) / errors, np.nan)
    tail = (1 - CONFIDENCE) / 2
    with warnings.catch_warnings():  # every resample without spread (2 equal seeds): no interval, said as NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low_t, high_t = np.nanquantile(t, [1 - tail, tail], axis=-1)
    # Seeds that agree after winsorising: no spread, so the interval is the value itself.
    low = np.where(error > 0, centre - low_t * error, centre)
    high = np.where(error > 0, centre - high_t * error, centre)
    return low, high, se
