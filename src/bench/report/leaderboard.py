"""The GEO-Bench-2 leaderboard's submission layout: scores.csv's columns and types, and the
submission folder (results_and_parameters.csv + additional_info.json) bench writes next to it.

The leaderboard (The-AI-Alliance/GEO-Bench-2-Leaderboard, utils/input_validation.py and
utils/constants.py at commit 1659ccf5) takes a folder holding exactly those two files. The CSV
needs the columns below, text or numeric as listed (NEW_SUBMISSION_COLUMN_INFO), 5 seeds of every
backbone x dataset, every dataset of at least one capability group, and frozen_or_full_ft
'frozen' or 'full_ft'; the JSON needs the keys of its JSON_FORMAT, with the same value types.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cell_checks import metric_name
from hydra_plugins.bench_sweeper.api import MAXIMIZE, MINIMIZE

TEXT = [
    "dataset",
    "Metric",
    "experiment_name",
    "partition name",
    "backbone",
    "decoder",
    "batch_size_selection",
    "frozen_or_full_ft",
]
INTEGER = ["early_stop_patience", "n_trials", "Seed", "data_percentages", "batch_size"]
FLOAT = ["weight_decay", "lr", "test metric"]
REQUIRED_SEEDS = 5
CSV_FILE, JSON_FILE = "results_and_parameters.csv", "additional_info.json"

# What the report itself needs of a CSV input.
REQUIRED = ["dataset", "Metric", "test metric", "Seed", "backbone"]
# scores.csv: what the report needs, the leaderboard's other columns, then bench's provenance.
LAYOUT = REQUIRED + [
    "decoder",
    "lr",
    "batch_size",
    "weight_decay",
    "n_trials",
    "early_stop_patience",
    "batch_size_selection",
    "partition name",
    "data_percentages",
    "partition_name",
    "frozen_or_full_ft",
    "experiment_name",
    "mlflow_run_id",
    "direction",
]
# TerraTorch's metric names -> the leaderboard's labels for the same metric. TerraTorch's
# "Accuracy" is the macro (per-class averaged) accuracy, not the leaderboard's Overall_Accuracy
# (micro, TerraTorch's "Accuracy_Micro"), so it keeps its own name.
METRIC_LABELS = {
    "Accuracy_Micro": "Overall_Accuracy",
    "mIoU": "Multiclass_Jaccard_Index",
    "Multilabel_F1_Score": "Multilabel_F1_Score",
    "RMSE": "RMSE",
    # TerraTorch's detection task logs test_map / test_segm_map; terratorch-iterate, which ran
    # the submissions, prefixed its test metrics with "test_" once more.
    "map": "test_test_map",
    "segm_map": "test_test_segm_map",
}
# bench's decoder names (task.decoder_name) -> the leaderboard's labels; the detection frameworks
# (faster-rcnn, mask-rcnn) are the same in both.
DECODER_LABELS = {"UNetDecoder": "UNet"}
# The leaderboard stores biomassters' RMSE as 1 - RMSE x this (its utils/constants.py BIOMASSTERS_STD,
# the dataset's target standard deviation), higher is better, still labelled RMSE; no other dataset
# is converted.
BIOMASSTERS_STD = 0.2537951171398163
CONVERTED = {("biomassters", "RMSE"): lambda rmse: 1 - rmse * BIOMASSTERS_STD}
# GEO-Bench partitions: default (the whole training split) or 0.01x_train ... 1.00x_train.
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)x[_ ]train")


def metric_label(metric: str) -> str:
    """The leaderboard's label for a TerraTorch metric, given with or without its stage (val/mIoU,
    test_map)."""
    name = metric_name(metric)
    return METRIC_LABELS.get(name, name)


def as_leaderboard_scores(scores: pd.DataFrame, score: str = "test metric", label: str = "Metric") -> pd.DataFrame:
    """The leaderboard's form of bench's own lower-is-better scores where it has one (biomassters: 1 -
    RMSE x 0.2538, then higher is better); rows already in that form (direction maximize, as every
    leaderboard CSV's) and every other dataset stay as they are."""
    out = scores.copy()
    for (dataset, metric), convert in CONVERTED.items():
        rows = (out["dataset"].astype(str) == dataset) & (out[label] == metric) & (out["direction"] == MINIMIZE)
        out.loc[rows, score] = convert(pd.to_numeric(out.loc[rows, score]))
        out.loc[rows, "direction"] = MAXIMIZE
    return out


def data_percentage(partition: object) -> float:
    """A partition's share of the training split in percent: default -> 100, 0.10x_train -> 10;
    NaN when unknown (no partition, or a name that says no share)."""
    if partition is None or (isinstance(partition, float) and np.isnan(partition)):
        return np.nan
    if str(partition) == "default":
        return 100.0
    found = _FRACTION.fullmatch(str(partition).strip())
    return round(100 * float(found[1]), 6) if found else np.nan


def _percent(value: object) -> float:
    """A data_percentages cell as given: 100, 100.0 or the example submission's '100%'."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
    number = pd.to_numeric(value, errors="coerce")
    return float(number) if pd.notna(number) else np.nan


def conform(scores: pd.DataFrame) -> pd.DataFrame:
    """The submission layout (LAYOUT first, other input columns after), with 'partition name' and
    data_percentages derived from partition_name where a row lacks them, and numeric columns
    numeric (whole numbers written as such)."""
    out = scores.reindex(columns=list(dict.fromkeys(LAYOUT + list(scores.columns))))
    given = out["data_percentages"].map(_percent)
    percent = given.where(given.notna(), out["partition_name"].map(data_percentage)).astype(float)
    out["data_percentages"] = percent
    named = percent.map(lambda p: f"{p:g}%" if pd.notna(p) else np.nan)
    out["partition name"] = out["partition name"].where(out["partition name"].notna(), named)
    for column in INTEGER + FLOAT:
        out[column] = pd.to_numeric(out[column], errors="coerce")
    for column in INTEGER:
        known = out[column].dropna()
        if (known == known.round()).all():
            out[column] = out[column].astype("Int64")
    return out


def additional_info(scores: pd.DataFrame) -> dict[str, str | list[dict[str, str]]]:
    """The leaderboard's additional_info.json (its JSON_FORMAT), filled with what bench knows; the
    links, licence and model sizes are for the submitter to fill."""
    trials = sorted({int(n) for n in scores["n_trials"].dropna()})
    seeds = sorted({int(n) for n in scores.groupby(["backbone", "dataset"])["Seed"].nunique()})
    finetuning = "/".join(sorted(scores["frozen_or_full_ft"].dropna().astype(str).unique())) or "full_ft"
    return {
        "Paper Link": "N/A",
        "Code Repository Link ": "N/A",  # the leaderboard's key ends with a space
        "License": "N/A",
        "Number of HPO trials": ", ".join(map(str, trials)) or "N/A",
        "Additional information about submission": f"Run with bench ({finetuning}): each backbone x dataset tuned with Optuna "
        f"({', '.join(map(str, trials)) or 'no'} trials), then {' to '.join(map(str, seeds))} seeds of its best "
        "configuration, each tested on its best-validation checkpoint. Experiments: "
        f"{', '.join(sorted(scores['experiment_name'].dropna().astype(str).unique()))}.",
        "Comments on new models in submission": "N/A",
        "New model info": [
            {"model_display_name": backbone, "model_size": "TBD", "unique_backbone_key": backbone}
            for backbone in sorted(scores["backbone"].astype(str).unique())
        ],
    }


def leaderboard_datasets() -> set[str]:
    """The datasets of the leaderboard's capability groups (geobench2_groups.json)."""
    groups = json.loads(resources.files("bench.report").joinpath("geobench2_groups.json").read_text())
    return {dataset for members in groups.values() for dataset in members}


def write_submission(scores: pd.DataFrame, folder: Path) -> list[str]:
    """The leaderboard's submission folder, in its vocabulary (its decoder labels, biomassters' RMSE
    converted as it stores it); returns what its validation or scoring would object to."""
    scores = as_leaderboard_scores(scores)
    scores["decoder"] = scores["decoder"].map(lambda d: DECODER_LABELS.get(d, d))
    folder.mkdir(parents=True, exist_ok=True)
    scores.to_csv(folder / CSV_FILE, index=False)
    (folder / JSON_FILE).write_text(json.dumps(additional_info(scores), indent=1) + "\n")
    return _objections(scores)


def _objections(scores: pd.DataFrame) -> list[str]:
    said = []
    counts = scores.groupby(["backbone", "dataset"])["Seed"].nunique()
    short = counts[counts != REQUIRED_SEEDS]
    if len(short):
        cells = ", ".join(f"{b} / {d}: {n}" for (b, d), n in short.head(3).items())
        said.append(
            f"the leaderboard wants {REQUIRED_SEEDS} seeds of each backbone x dataset ({cells}"
            f"{', ...' if len(short) > 3 else ''})"
        )
    groups = json.loads(resources.files("bench.report").joinpath("geobench2_groups.json").read_text())
    have = set(scores["dataset"].astype(str))
    if not any(set(members) <= have for members in groups.values()):
        said.append(
            "the leaderboard wants every dataset of at least one of its capability groups (Core: "
            f"{', '.join(groups['Core'])}); this one has {', '.join(sorted(have))}"
        )
    lower = sorted(scores.loc[scores["direction"] == MINIMIZE, "dataset"].astype(str).unique())
    if lower:
        said.append(
            f"lower-is-better scores on {', '.join(lower)}: the leaderboard ranks higher as better and has a "
            "higher-is-better form of biomassters' RMSE only (1 - RMSE x 0.2538); convert them before submitting"
        )
    return said
