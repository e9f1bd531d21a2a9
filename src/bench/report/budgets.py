"""What each scored model x dataset got, so that unequal treatment never passes silently.

datasets.csv gains, per model x dataset:
  - tuning_trials: the completed tuning trials of the cell that gave its scores (a sweep's latest
    study version; a leaderboard CSV's own n_trials);
  - failed_repeats: its seeds whose repeat failed (repeats.csv state FAIL), never scored;
  - note: what sets it apart from the others: fewer completed tuning trials than another model on
    the dataset, failed repeats, fewer seeds than another cell of its dataset or of its model.
failed_table lists every failed repeat (a cell whose repeats all failed has no score, so it is
there and on the console, not in datasets.csv).
"""

from __future__ import annotations

import pandas as pd

from bench.report.inputs import latest, standing

FAILED_COLUMNS = ["model", "dataset", "seed", "error", "sweep"]


def failed_table(repeats: pd.DataFrame) -> pd.DataFrame:
    """One row per failed repeat of a cell's latest version: model, dataset, seed, its error, the sweep."""
    if repeats.empty or "state" not in repeats.columns:
        return pd.DataFrame(columns=FAILED_COLUMNS)
    rows = repeats[standing(repeats) & (repeats["state"] == "FAIL")]
    return rows.reindex(columns=FAILED_COLUMNS).sort_values(["model", "dataset", "seed"]).reset_index(drop=True)


def _completed(scores: pd.DataFrame, tuning: pd.DataFrame) -> pd.Series:
    """Completed tuning trials per (model, dataset), from the input that gave the scores."""
    known = {}
    if not tuning.empty and "state" in tuning.columns:
        rows = tuning[latest(tuning)]
        counts = (rows["state"] == "COMPLETE").groupby([rows["model"], rows["dataset"], rows["source"]]).sum()
        known = counts.to_dict()
    out = {}
    for (model, dataset), rows in scores.groupby(["model", "dataset"], sort=False):
        swept = [known[(model, dataset, s)] for s in rows["source"].unique() if (model, dataset, s) in known]
        given = pd.to_numeric(rows["n_trials"], errors="coerce").dropna()
        out[(model, dataset)] = swept[0] if swept else (given.iloc[0] if len(given) else pd.NA)
    return pd.Series(out, dtype="Int64")


def annotate(datasets: pd.DataFrame, scores: pd.DataFrame, tuning: pd.DataFrame, repeats: pd.DataFrame) -> pd.DataFrame:
    """datasets (datasets.csv's rows) with tuning_trials, failed_repeats and note."""
    out = datasets.copy()
    keys = list(zip(out["model"], out["dataset"]))
    completed = _completed(scores, tuning)
    out["tuning_trials"] = pd.array([completed.get(k, pd.NA) for k in keys], dtype="Int64")
    failed = failed_table(repeats)
    seeds = failed.groupby(["model", "dataset"])["seed"].agg(list).to_dict()
    out["failed_repeats"] = [len(seeds.get(k, [])) for k in keys]
    most_trials = out.groupby("dataset")["tuning_trials"].transform("max")
    most_seeds = pd.concat(
        [out.groupby("dataset")["n_seeds"].transform("max"), out.groupby("model")["n_seeds"].transform("max")], axis=1
    ).max(axis=1)
    notes = []
    for i, key in enumerate(keys):
        said = []
        trials, top = out["tuning_trials"].iloc[i], most_trials.iloc[i]
        if pd.notna(trials) and pd.notna(top) and trials < top:
            said.append(f"{trials} completed tuning trials, {top} for another model on {key[1]}")
        if key in seeds:
            said.append(f"{len(seeds[key])} failed repeat(s) (seed {', '.join(_whole(s) for s in seeds[key])})")
        if out["n_seeds"].iloc[i] < most_seeds.iloc[i]:
            said.append(f"{out['n_seeds'].iloc[i]} seeds where another cell has {int(most_seeds.iloc[i])}")
        notes.append("; ".join(said))
    out["note"] = notes
    return out


def unscored(failed: pd.DataFrame, datasets: pd.DataFrame) -> list[str]:
    """Cells whose repeats all failed: no row in datasets.csv, so said apart."""
    scored = set(zip(datasets["model"], datasets["dataset"]))
    return [
        f"{model} / {dataset}: every repeat failed ({len(rows)}), so it has no test score"
        for (model, dataset), rows in failed.groupby(["model", "dataset"])
        if (model, dataset) not in scored
    ]


def _whole(value: object) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return str(int(number)) if pd.notna(number) and float(number).is_integer() else str(value)
