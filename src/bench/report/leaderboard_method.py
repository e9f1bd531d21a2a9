"""--compat geobench2-leaderboard: the public GEO-Bench-2 leaderboard's own figures, exactly.

So users can check bench against the leaderboard (The-AI-Alliance/GEO-Bench-2-Leaderboard,
utils/compute_tools.py and utils/compile_results.py at commit 1659ccf5). bench's own code, written
to the same method, defects included:
  - normalisation (x - min) / (max - min): no direction flip, no clipping;
  - per-dataset value: scipy trim_mean(0.25) of the normalised seeds, no bootstrap;
  - group value: the mean of 100 bootstrap IQMs. Bootstrap i resamples the seeds of each
    backbone x dataset with pandas groupby(...).sample(frac=1, replace=True, random_state=100+i)
    over the group's rows in input order, every backbone's rows included (also those missing a
    dataset of the group, which shift the random stream but get no value), then takes the IQM of
    each backbone's pooled rows;
  - "±": scipy.stats.sem of those 100 values, reported as `se`. It is the spread of a mean of
    bootstrap means, not a confidence interval, so ci_low/ci_high stay empty.
Each input is bootstrapped on its own, as the leaderboard scores each submission on its own: the
random stream runs over one input's rows, so adding an input never moves another's figures
(merge.py gives a model held by several inputs one name per input in this mode). A group is
scored for an input only when the input has all of its datasets. The leaderboard ranks higher as
better and never flips a lower-is-better metric; build.py warns when one reaches it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.stats import TRIM, Normalizer, single_model_datasets

REPEAT = 100


def normalize(scores: pd.DataFrame, normalizer: Normalizer | None) -> pd.Series:
    """The leaderboard's (x - min) / (max - min); without a normalizer (the leaderboard always has
    one) the observed range, and, as in bench's method, nothing for a dataset one model scored."""
    out = pd.Series(np.nan, index=scores.index, dtype=float)
    alone = set(single_model_datasets(scores)) if normalizer is None else set()
    for dataset, rows in scores.groupby("dataset", sort=False):
        if dataset in alone:
            continue
        low, high = normalizer[dataset] if normalizer is not None else (rows["score"].min(), rows["score"].max())
        out.loc[rows.index] = (rows["score"] - low) / (high - low)
    return out


def _iqm(values: pd.Series) -> float:
    return stats.trim_mean(values, proportiontocut=TRIM, axis=None)


def dataset_table(scores: pd.DataFrame) -> pd.DataFrame:
    grouped = scores.groupby(["model", "dataset"])
    table = grouped["normalized"].apply(_iqm).rename("normalized_iqm").reset_index()
    extra = grouped.agg(
        metric=("metric", "first"),
        direction=("direction", "first"),
        n_seeds=("score", "size"),
        raw_mean=("score", "mean"),
        raw_std=("score", "std"),
    ).reset_index()
    table = extra.merge(table, on=["model", "dataset"])
    table["ci_low"] = table["ci_high"] = np.nan
    return table[
        [
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
        ]
    ]


def group_table(scores: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """scores: model, backbone, dataset, source (the input), normalized; one row per seed."""
    rows = []
    for group, datasets in groups.items():
        draws: dict[str, list[float]] = {}
        absent: dict[str, set[str]] = {}  # per input: the group's datasets it lacks
        for source, data in scores.groupby("source", sort=False):
            absent[source] = set(datasets) - set(data["dataset"])
            if not absent[source]:
                draws.update(_bootstrap_iqms(data.loc[data["dataset"].isin(datasets)]))
        for model in sorted(scores["model"].unique()):
            mine = scores.loc[scores["model"] == model]
            have, lacking = set(mine["dataset"]), set().union(*(absent[s] for s in mine["source"].unique()))
            row = {
                "model": model,
                "group": group,
                "value": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "se": np.nan,
                "reason": "",
            }
            if not set(datasets) <= have:
                row["reason"] = f"no scores for {', '.join(sorted(set(datasets) - have))}"
            elif lacking:
                row["reason"] = f"the input has no scores for {', '.join(sorted(lacking))}"
            elif np.isnan(draws[model]).any():
                row["reason"] = "a dataset of the group has no normalised score (give --normalizer)"
            else:
                row["value"], row["se"] = float(np.mean(draws[model])), float(stats.sem(draws[model]))
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "group", "value", "ci_low", "ci_high", "se", "reason"])


def _bootstrap_iqms(data: pd.DataFrame) -> dict[str, list[float]]:
    # Grouped by backbone first, as the leaderboard groups (backbone, dataset): the random stream
    # then visits the groups in its order.
    by_cell = data.groupby(["backbone", "model", "dataset"])
    draws: dict[str, list[float]] = {}
    for i in range(REPEAT):
        sample = by_cell.sample(frac=1, replace=True, random_state=100 + i)
        for model, value in sample.groupby("model")["normalized"].apply(_iqm).items():
            draws.setdefault(model, []).append(value)
    return draws
