"""The sentences a report says, on the console and atop its details: how it computed its figures,
why a table has no normalised score, which cells were treated unequally, what --compat cannot
reproduce."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report import budgets, stats
from hydra_plugins.bench_sweeper.api import MINIMIZE


def compat_warnings(args: Any, data: pd.DataFrame) -> list[str]:
    said = []
    lower = sorted(data.loc[data["direction"] == MINIMIZE, "dataset"].unique())
    if lower:
        said.append(
            f"--compat {args.compat}: lower-is-better scores on {', '.join(lower)} reach the leaderboard's "
            "method unconverted, and it ranks higher as better, so a better model scores lower there; "
            "the leaderboard has a higher-is-better form of biomassters' RMSE only (1 - RMSE x 0.2538)"
        )
    if args.normalizer is None and data["source"].nunique() > 1:
        said.append(
            f"--compat {args.compat} without --normalizer: the observed range across all inputs normalises "
            "the scores, so each input's figures depend on the others; the leaderboard uses a fixed one"
        )
    return said


def method(args: Any) -> str:
    if args.compat:
        return (
            f"compat {args.compat}: the leaderboard's normalisation, IQMs and mean ± SEM of 100 bootstrap IQMs, "
            "each input bootstrapped on its own"
        )
    group = (
        "a 95 % percentile CI resampling datasets, then seeds"
        if args.resample == "datasets"
        else "a 95 % stratified studentised bootstrap CI (seeds resampled within each dataset)"
    )
    return (
        f"per-dataset IQM with Yuen's 95 % trimmed-mean interval; group IQM with {group} ({args.bootstrap} "
        f"samples, seed {args.seed}); P(A > B) with a 95 % percentile bootstrap CI, which at 5 seeds covers only "
        "0.81-0.91 on a single dataset in simulation (0.94-0.95 on 6); min-max normalised per dataset, 1 = best, "
        "never clipped"
    )


def normalisation_notes(data: pd.DataFrame, normalizer: stats.Normalizer | None) -> list[str]:
    """Why a table has no normalised score, or no score at all."""
    if data.empty:
        return [
            "no test score yet (no finished seed repeat): only the tuning tables; resume the sweep with "
            "hydra.sweeper.repeats=5 (the same command and hydra.sweep.dir=<sweep dir>) to add them"
        ]
    if normalizer is not None:
        return []
    if data["model"].nunique() == 1:
        return [
            "one model and no --normalizer: min-max normalisation across models needs two, so the tables show "
            "raw scores (IQM with 95 % CI) and no normalised value or aggregate; give --normalizer "
            "{dataset: [min, max]} to normalise"
        ]
    alone = stats.single_model_datasets(data)
    return [f"no other model scored {', '.join(alone)}: no normalised score there (give --normalizer)"] if alone else []


def unequal_notes(datasets: pd.DataFrame, failed: pd.DataFrame, flags: pd.DataFrame) -> list[str]:
    """Per cell: fewer completed tuning trials, failed repeats, fewer seeds (budgets.py, tuning.py)."""
    said = [f"{r.model} / {r.dataset}: {r.note}" for r in datasets.itertuples() if r.note]
    said += budgets.unscored(failed, datasets)
    scored = set(zip(datasets["model"], datasets["dataset"]))
    return said + [
        f"tuning {r.curve}: {r.note}"
        for r in flags.itertuples()
        if r.fewer_trials and (r.model, r.dataset) not in scored
    ]
