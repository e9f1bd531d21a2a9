"""The report's statistics, on a scores table with one row per model x dataset x seed.

bench's method (Agarwal et al. 2021, as GEO-Bench-2 uses it, with its defects fixed):
  - min-max normalisation per dataset, direction-aware (1 is the best for a lower-is-better
    metric too). Never clipped: with a fixed normalizer a model may fall below its minimum or
    beat its maximum, and clipping would tie models that differ. Without a normalizer the
    observed range across models is used, so a dataset scored by one model only gets no
    normalised score (its own seeds' spread would map to [0, 1] and say nothing);
  - per-dataset IQM: the 25 % trimmed mean over seeds, with Yuen's interval (intervals.py), of the
    normalised scores and of the raw ones;
  - a group's value: the IQM of the pooled normalised seed scores of its datasets, with a
    stratified studentised bootstrap CI (intervals.py; optionally a percentile CI resampling the
    datasets too); `se` is the bootstrap standard error;
  - probability of improvement P(A > B): per dataset, the Mann-Whitney probability that a seed of
    A beats a seed of B (ties count half), averaged over the group's datasets; stratified
    percentile CI. At 5 seeds it covers 0.94-0.95 on 6 datasets but 0.81-0.91 on one
    (benchmarks/report_coverage.py); studentising it with DeLong's standard error did worse on one
    dataset (0.61-0.89) and over-covered on several, so it is kept, and the page says so.
scipy does the trimmed means, bootstraps and Mann-Whitney statistics; numpy the resampling of
datasets, which scipy's bootstrap has no notion of.

Columns used: model, dataset, direction ("maximize" / "minimize"), score (the raw test value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.intervals import CONFIDENCE, TRIM, iqm, studentized, yuen  # noqa: F401  (TRIM, iqm: compat's)
from hydra_plugins.bench_sweeper.api import MINIMIZE

# dataset -> the (min, max) that normalise its scores (--normalizer)
Normalizer = dict[str, tuple[float, float]]
# A vectorised statistic of one or more samples, as scipy.stats.bootstrap calls it.
Statistic = Callable[..., np.ndarray]


@dataclass
class Settings:
    n_bootstrap: int = 1000
    seed: int = 0
    resample_datasets: bool = False


def single_model_datasets(scores: pd.DataFrame) -> list[str]:
    """Datasets that fewer than two models scored: the observed range cannot normalise them."""
    counts = scores.groupby("dataset")["model"].nunique()
    return sorted(counts[counts < 2].index)


def normalize(scores: pd.DataFrame, normalizer: Normalizer | None) -> pd.Series:
    """Each score mapped per dataset so that the range's low end is 0 and its high end 1, the best
    end being 1: by the normalizer's fixed range, else by the observed range across models (NaN
    for a dataset one model scored). Not clipped."""
    out = pd.Series(np.nan, index=scores.index, dtype=float)
    alone = set(single_model_datasets(scores)) if normalizer is None else set()
    for dataset, rows in scores.groupby("dataset", sort=False):
        if dataset in alone:
            continue
        if normalizer is not None:
            low, high = normalizer[dataset]
        else:
            low, high = rows["score"].min(), rows["score"].max()
        span = high - low
        value = (rows["score"] - low) / span if span else pd.Series(0.5, index=rows.index)
        minimize = rows["direction"] == MINIMIZE
        out.loc[rows.index] = value.where(~minimize, 1.0 - value)
    return out


def _bootstrap(samples: list[np.ndarray], statistic: Statistic, settings: Settings) -> tuple[float, float, float]:
    """(ci_low, ci_high, se) of `statistic` over samples each resampled within itself (strata)."""
    if any(len(s) < 2 for s in samples):
        return np.nan, np.nan, np.nan  # a single seed has no spread to resample
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=settings.n_bootstrap,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(settings.seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high), float(result.standard_error)


DATASET_COLUMNS = [
    "model",
    "dataset",
    "metric",
    "direction",
    "n_seeds",
    "raw_mean",
    "raw_std",
    "normalized_iqm",
    "ci_low",
    "ci_high",
    "raw_iqm",
    "raw_ci_low",
    "raw_ci_high",
]


def _intervals(values: pd.Series) -> pd.DataFrame:
    """Per cell (values: one list of seed scores each): IQM, low, high; NaN where a score is
    missing (a dataset without normalised scores). Cells with as many seeds are computed at once."""
    out = pd.DataFrame(np.nan, index=values.index, columns=["iqm", "low", "high"])
    lengths = values.map(len)
    for n in lengths.unique():
        cells = values.index[lengths == n]
        seeds = np.array(values[cells].tolist(), dtype=float).reshape(len(cells), n)
        known = ~np.isnan(seeds).any(axis=1)
        low, high = yuen(seeds[known])
        out.loc[cells[known], "iqm"], out.loc[cells[known], "low"], out.loc[cells[known], "high"] = (
            iqm(seeds[known]),
            low,
            high,
        )
    return out


def dataset_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model x dataset: raw mean/std, the normalised and raw IQMs with their CIs."""
    if scores.empty:
        return pd.DataFrame(columns=DATASET_COLUMNS)
    grouped = scores.groupby(["model", "dataset"], sort=True)
    table = grouped.agg(
        metric=("metric", "first"),
        direction=("direction", "first"),
        n_seeds=("score", "size"),
        raw_mean=("score", "mean"),
        raw_std=("score", "std"),
    )
    for column, names in (
        ("normalized", ["normalized_iqm", "ci_low", "ci_high"]),
        ("score", ["raw_iqm", "raw_ci_low", "raw_ci_high"]),
    ):
        table[names] = _intervals(grouped[column].agg(list)).to_numpy()
    return table.reset_index()[DATASET_COLUMNS]


def _cells(scores: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(model, dataset) -> its normalised seed scores."""
    return {key: rows["normalized"].to_numpy(float) for key, rows in scores.groupby(["model", "dataset"], sort=False)}


def _resampled_datasets_iqm(strata: list[np.ndarray], settings: Settings) -> tuple[float, float, float]:
    """Two-level bootstrap: datasets drawn with replacement, then seeds within each drawn one."""
    rng = np.random.default_rng(settings.seed)
    values = np.empty(settings.n_bootstrap)
    for i in range(settings.n_bootstrap):
        picked = rng.integers(len(strata), size=len(strata))
        values[i] = iqm(np.concatenate([rng.choice(strata[j], size=len(strata[j])) for j in picked]))
    low, high = np.percentile(values, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high), float(values.std(ddof=1))


def group_table(scores: pd.DataFrame, groups: dict[str, list[str]], settings: Settings) -> pd.DataFrame:
    """One row per model x group; a model without every dataset of a group gets no value, and why."""
    rows, cells = [], _cells(scores)
    for group, datasets in groups.items():
        for model in sorted(scores["model"].unique()):
            missing = [d for d in datasets if (model, d) not in cells]
            row = {
                "model": model,
                "group": group,
                "value": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "se": np.nan,
                "reason": "",
            }
            strata = [] if missing else [cells[model, d] for d in datasets]
            unnormalised = [d for d, s in zip(datasets, strata) if np.isnan(s).any()]
            if missing:
                row["reason"] = f"no scores for {', '.join(missing)}"
            elif unnormalised:
                row["reason"] = (
                    f"no other model scored {', '.join(unnormalised)}, so it has no normalised score "
                    "(give --normalizer)"
                )
            else:
                row["value"] = float(iqm(np.concatenate(strata)))
                if settings.resample_datasets:
                    row["ci_low"], row["ci_high"], row["se"] = _resampled_datasets_iqm(strata, settings)
                else:
                    low, high, se = studentized(strata, settings.n_bootstrap, np.random.default_rng(settings.seed))
                    row["ci_low"], row["ci_high"], row["se"] = float(low), float(high), float(se)
                if np.isnan(row["ci_low"]):
                    row["reason"] = (
                        "a single seed on some dataset: no confidence interval"
                        if min(map(len, strata)) < 2
                        else "no resample has any spread (too few distinct seed scores): no confidence interval"
                    )
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "group", "value", "ci_low", "ci_high", "se", "reason"])


def _improvement(k: int) -> Statistic:
    """Statistic over 2k samples (A's k datasets, then B's): mean over datasets of P(A > B)."""

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        probabilities = []
        for a, b in zip(samples[:k], samples[k:]):
            u = stats.mannwhitneyu(a, b, axis=axis, method="asymptotic").statistic
            probabilities.append(u / (a.shape[axis] * b.shape[axis]))
        return np.mean(probabilities, axis=0)

    return statistic


def pair_table(scores: pd.DataFrame, groups: dict[str, list[str]], settings: Settings) -> pd.DataFrame:
    """P(model_a > model_b) per group, for every ordered pair of models scored on the whole group."""
    rows, cells = [], _cells(scores)
    for group, datasets in groups.items():
        models = [m for m in sorted(scores["model"].unique()) if all((m, d) in cells for d in datasets)]
        for a in models:
            for b in models:
                if a == b:
                    continue
                samples = [cells[a, d] for d in datasets] + [cells[b, d] for d in datasets]
                statistic = _improvement(len(datasets))
                value = float(statistic(*[s[np.newaxis, :] for s in samples])[0])
                low, high, _ = _bootstrap(samples, statistic, settings)
                rows.append(
                    {"group": group, "model_a": a, "model_b": b, "probability": value, "ci_low": low, "ci_high": high}
                )
    return pd.DataFrame(rows, columns=["group", "model_a", "model_b", "probability", "ci_low", "ci_high"])


def performance_profile(scores: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """Fraction of each model's normalised seed scores above each threshold tau."""
    rows = []
    for model, group in scores.dropna(subset=["normalized"]).groupby("model", sort=True):
        values = group["normalized"].to_numpy(float)
        rows += [{"model": model, "tau": float(t), "fraction": float((values > t).mean())} for t in taus]
    return pd.DataFrame(rows)
