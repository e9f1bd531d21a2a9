"""The report's inputs, as one scores table in the GEO-Bench-2 leaderboard submission layout.

  a sweep dir         its repeats.csv (test scores per cell x seed) and results.csv (tuning curves)
  mlflow:<experiment> the repeats.csv / results.csv artifacts of every benchmark run in it
  a .csv file         a leaderboard submission (or a scores.csv bench wrote: the same layout)

Several inputs are concatenated; a model x dataset x seed given twice keeps its last row.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.errors import ReportError
from bench.report.leaderboard import LAYOUT, REQUIRED, conform, metric_label
from hydra_plugins.bench_sweeper._objectives import MAXIMIZE

# Marks the rows of sweeps (bench's own runs, the submission folder's rows) while inputs merge.
_OWN = "_bench_own"


@dataclass
class Inputs:
    scores: pd.DataFrame  # leaderboard.LAYOUT columns, then any other columns of the CSV inputs
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)  # results.csv rows of the sweeps
    repeats: pd.DataFrame = field(default_factory=pd.DataFrame)  # repeats.csv rows of the sweeps (costs)
    sweep_dirs: list[Path] = field(default_factory=list)
    own: pd.Series = field(default_factory=lambda: pd.Series(dtype=bool))  # per scores row: from a sweep


def load(sources: list[str], tracking_uri: str | None = None) -> Inputs:
    if not sources:
        raise ReportError("no input: give sweep dirs, mlflow:<experiment>, or leaderboard CSV files")
    scores, tuning, repeats, sweeps = [], [], [], []
    for source in sources:
        if source.startswith("mlflow:"):
            for directory in _from_mlflow(source.removeprefix("mlflow:"), tracking_uri):
                scores.append(_from_sweep(directory).assign(**{_OWN: True}))
                tuning.append(_table(directory, "results.csv"))
                repeats.append(_table(directory, "repeats.csv"))
            continue
        path = Path(source)
        if path.is_dir():
            scores.append(_from_sweep(path).assign(**{_OWN: True}))
            tuning.append(_table(path, "results.csv"))
            repeats.append(_table(path, "repeats.csv"))
            sweeps.append(path)
        elif path.is_file():
            scores.append(_from_csv(path).assign(**{_OWN: False}))
        else:
            raise ReportError(f"{source} does not exist: give a sweep dir, mlflow:<experiment>, or a CSV file")
    # Whole-number columns stay whole where another input lacks them (not 6.28e+17 for an experiment id).
    scores = [frame.astype({c: "Int64" for c in frame.select_dtypes("int64").columns}) for frame in scores]
    merged = conform(pd.concat(scores, ignore_index=True))
    repeated = merged.duplicated(["backbone", "dataset", "Seed"], keep="last")
    if repeated.any():
        print(f"bench.report: {int(repeated.sum())} model x dataset x seed score(s) given more than once: "
              "the last input's are kept", file=sys.stderr)
    merged = merged[~repeated].reset_index(drop=True)
    own = merged.pop(_OWN).astype(bool)
    joined = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # noqa: E731
    return Inputs(merged, joined(tuning), joined(repeats), sweeps, own)


def _from_csv(path: Path) -> pd.DataFrame:
    try:
        data = pd.read_csv(path, float_precision="round_trip")
    except Exception as exc:
        raise ReportError(f"{path} cannot be read as CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in data.columns]
    if missing:
        raise ReportError(f"{path} lacks the column(s) {', '.join(repr(c) for c in missing)} of the GEO-Bench-2 "
                          f"submission layout, which needs {', '.join(REQUIRED)}")
    if "direction" not in data.columns:
        # The leaderboard's scores are all higher-is-better (its biomassters RMSE is stored as 1 - scaled RMSE).
        data["direction"] = MAXIMIZE
    return data.reindex(columns=list(dict.fromkeys(LAYOUT + list(data.columns))))


def _from_sweep(directory: Path) -> pd.DataFrame:
    path = directory / "repeats.csv"
    if not path.is_file():
        raise ReportError(f"{directory} has no repeats.csv: its cells were tuned without seed repeats, so there "
                          "are no test scores. Resume it with hydra.sweeper.repeats=5 (the same command and "
                          f"hydra.sweep.dir={directory}) to add them")
    rows = pd.read_csv(path, float_precision="round_trip")
    if "study_version" in rows.columns:  # a cell whose experiment changed: its latest version only
        rows = rows[rows["study_version"] == rows.groupby("cell")["study_version"].transform("max")]
    rows = rows[rows["state"] == "COMPLETE"]
    if rows.empty:
        raise ReportError(f"{path} has no finished repeat yet")

    def column(*names: str, default: object = None) -> pd.Series:
        for name in names:
            if name in rows.columns:
                return rows[name]
        return pd.Series(default, index=rows.index)

    metric = column("metric").astype(str).str.partition("/")[2]
    tuned_batch = "hparams.batch_size" in rows.columns
    batch = column("hparams.batch_size")
    if not tuned_batch and "batch_size" in rows.columns:
        # A batch_size column: the one hydra.sweeper.columns names, except in a row whose out-of-memory
        # retries halved it, where it is the batch that ran (oom_retries, accumulate_grad_batches beside it).
        retried = pd.to_numeric(column("oom_retries", default=0), errors="coerce").fillna(0) > 0
        batch = rows["batch_size"].where(~retried)
    return pd.DataFrame({
        "dataset": column("task", "cell"), "Metric": metric.map(metric_label),
        "test metric": rows["test_value"], "Seed": rows["seed"], "backbone": column("model", "cell"),
        "decoder": column("decoder").fillna("unknown"), "lr": column("hparams.lr", "lr"), "batch_size": batch,
        "weight_decay": column("hparams.optimizer_hparams.weight_decay", "weight_decay"),
        "n_trials": rows["n_trials"], "early_stop_patience": column("early_stop_patience", "patience", "task.patience"),
        "batch_size_selection": "HPO" if tuned_batch else "Fixed",
        "partition_name": column("partition", "task.partition", default="default").fillna("default"),
        "frozen_or_full_ft": "full_ft", "experiment_name": directory.name, "mlflow_run_id": column("mlflow_run_id"),
        "direction": rows["direction"],
    })


def _table(directory: Path, name: str) -> pd.DataFrame:
    """A sweep's results.csv or repeats.csv as it is, with the sweep's name; empty when absent."""
    path = directory / name
    if not path.is_file():
        return pd.DataFrame()
    rows = pd.read_csv(path)
    rows["sweep"] = directory.name
    return rows


def _from_mlflow(experiment: str, tracking_uri: str | None) -> list[Path]:
    """Each benchmark run's tables, downloaded next to each other as sweep dirs."""
    import os

    from mlflow import MlflowClient

    from bench.tracking import runs

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small CSV is noise
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"MLflow at {client.tracking_uri} has no experiment {experiment!r}")
    benchmarks = runs.find_runs(client, found.experiment_id, **{runs.LEVEL: "benchmark"})
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    directories = []
    for run in benchmarks:
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        if "repeats.csv" not in names:
            continue
        target = root / Path(run.data.tags.get(runs.SWEEP_DIR, run.info.run_id)).name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("repeats.csv", "results.csv"):
            if name in names:
                client.download_artifacts(run.info.run_id, name, str(target))
        directories.append(target)
    if not directories:
        raise ReportError(f"MLflow experiment {experiment!r} has no benchmark run with repeats (repeats.csv)")
    return directories


def load_json(path: str, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"the {what} {path} cannot be read as JSON: {exc}") from None
