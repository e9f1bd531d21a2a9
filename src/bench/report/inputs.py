"""The report's inputs, each read on its own into the GEO-Bench-2 leaderboard submission layout.

  a sweep dir         its repeats.csv (test scores per cell x seed) and results.csv (tuning trials);
                      either may be missing (a sweep tuned without repeats yet has no test score)
  mlflow:<experiment> the repeats.csv / results.csv artifacts of every benchmark run in it
  a .csv file         a leaderboard submission (or a scores.csv bench wrote: the same layout)

merge.py decides which rows are the same experiment. For that a sweep's rows also carry its swept
keys: the describing columns of its cells (results.csv and repeats.csv list them first, before a
trial's or a seed's own columns) other than those the layout already maps (task, model, decoder,
partition, patience, frozen_or_full_ft). A tuned hyperparameter is a trial's param, listed after
them, so it never counts as another experiment; a key swept as cells (hparams.lr=1e-3,1e-4) does.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ReportError
from bench.report.leaderboard import LAYOUT, REQUIRED, conform, metric_label
from hydra_plugins.bench_sweeper.api import MAXIMIZE, REPEATS_CSV, RESULTS_CSV, running_driver

RESULTS, REPEATS = RESULTS_CSV, REPEATS_CSV
# The first column after a row's describing ones (bench_sweeper/_results.py: TRIAL_COLUMNS, write_repeats).
_FIRST_OWN = {RESULTS: "study", REPEATS: "seed"}
# Describing columns the layout maps to its own (or that name the cell itself).
_MAPPED = {
    "cell",
    "task",
    "dataset",
    "model",
    "metric",
    "direction",
    "decoder",
    "partition",
    "task.partition",
    "patience",
    "frozen_or_full_ft",
}
FULL_FT, FROZEN = "full_ft", "frozen"


@dataclass
class Source:
    path: str  # as given (a sweep of an MLflow experiment: mlflow:<experiment>/<sweep>)
    name: str  # short, for labels: the CSV's stem or the sweep dir's name
    scores: pd.DataFrame  # LAYOUT, then the sweep's swept keys or the CSV's other columns; one row per seed
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)  # results.csv, with the layout's identity columns
    repeats: pd.DataFrame = field(default_factory=pd.DataFrame)  # repeats.csv (every state), likewise
    swept: list[str] = field(default_factory=list)
    directory: Path | None = None  # a sweep's
    notes: list[str] = field(default_factory=list)  # about the input's state (a sweep still running)

    @property
    def own(self) -> bool:
        """A sweep of bench's (its rows go to submission/), not a leaderboard CSV."""
        return self.directory is not None


def read(sources: list[str], tracking_uri: str | None = None) -> list[Source]:
    if not sources:
        raise ReportError("no input: give sweep dirs, mlflow:<experiment>, or leaderboard CSV files")
    read_ = []
    for source in sources:
        if source.startswith("mlflow:"):
            experiment = source.removeprefix("mlflow:")
            read_ += [_from_sweep(d, f"{source}/{d.name}") for d in _from_mlflow(experiment, tracking_uri)]
            continue
        path = Path(source)
        if path.is_dir():
            read_.append(_from_sweep(path, source))
        elif path.is_file():
            read_.append(Source(source, path.stem, _from_csv(path)))
        else:
            raise ReportError(f"{source} does not exist: give a sweep dir, mlflow:<experiment>, or a CSV file")
    return read_


def _from_csv(path: Path) -> pd.DataFrame:
    try:
        data = pd.read_csv(path, float_precision="round_trip")
    except Exception as exc:
        raise ReportError(f"{path} cannot be read as CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in data.columns]
    if missing:
        raise ReportError(
            f"{path} lacks the column(s) {', '.join(repr(c) for c in missing)} of the GEO-Bench-2 "
            f"submission layout, which needs {', '.join(REQUIRED)}"
        )
    if "direction" not in data.columns:
        # The leaderboard's scores are all higher-is-better (its biomassters RMSE is stored as 1 - scaled RMSE).
        data["direction"] = MAXIMIZE
    return data.reindex(columns=list(dict.fromkeys(LAYOUT + list(data.columns))))


def _from_sweep(directory: Path, path: str) -> Source:
    tuning, repeats = _table(directory, RESULTS), _table(directory, REPEATS)
    if tuning is None and repeats is None:
        raise ReportError(
            f"{directory} has neither {RESULTS} nor {REPEATS}: give the directory a bench sweep "
            "wrote (python -m bench -m ...)"
        )
    tuning, repeats = (rows if rows is not None else pd.DataFrame() for rows in (tuning, repeats))
    swept = list(dict.fromkeys(_swept(directory / RESULTS, tuning) + _swept(directory / REPEATS, repeats)))
    layouts = [conform(_layout(rows, directory, swept)) if not rows.empty else None for rows in (tuning, repeats)]
    tuning, repeats = (
        rows.assign(**_identity(layout)) if layout is not None else rows
        for rows, layout in zip((tuning, repeats), layouts)
    )
    scores = pd.DataFrame(columns=LAYOUT + swept)
    if (scored_layout := layouts[1]) is not None:  # repeats.csv has rows
        scored = standing(repeats) & (repeats["state"] == "COMPLETE")
        scores = scored_layout[scored].reset_index(drop=True)
    notes = []
    if driver := running_driver(directory):
        stage = "tuning" if repeats.empty else "running"
        notes.append(
            f"{directory.name} is still {stage} (its driver, {driver}, holds driver.lock): this report "
            "has the trials and repeats finished so far"
        )
    return Source(path, directory.name, scores, tuning, repeats, swept, directory, notes)


def latest(rows: pd.DataFrame) -> pd.Series:
    """Per row of results.csv or repeats.csv: whether it is of its cell's latest study version (a
    cell whose experiment changed keeps its older versions' rows too)."""
    if rows.empty or "study_version" not in rows.columns or "cell" not in rows.columns:
        return pd.Series(True, index=rows.index)
    version = pd.to_numeric(rows["study_version"], errors="coerce").fillna(1)
    cell = [rows[c].astype(str) for c in ("source", "sweep", "cell") if c in rows.columns]
    return version == version.groupby(cell).transform("max")


def standing(repeats: pd.DataFrame) -> pd.Series:
    """Per row of repeats.csv: whether it stands for its cell x seed. Its cell's latest version,
    and the row repeats.csv marks `counts` (a seed interrupted and run again has a row per run);
    before that column, every row not interrupted (an interrupted repeat was recorded FAIL then)."""
    rows = latest(repeats)
    for column, wanted in (("counts", "true"), ("interrupted", "false")):
        if column in repeats.columns:
            return rows & (repeats[column].astype(str).str.lower() == wanted)
    return rows


def _swept(path: Path, rows: pd.DataFrame) -> list[str]:
    if rows.empty:
        return []
    header = list(rows.columns)
    describing = header[: header.index(_FIRST_OWN[path.name])] if _FIRST_OWN[path.name] in header else []
    return [c for c in describing if c not in _MAPPED and c != "sweep"]


def _layout(rows: pd.DataFrame, directory: Path, swept: list[str]) -> pd.DataFrame:
    """Rows of results.csv or repeats.csv in the submission layout (a tuning trial has no test metric)."""

    def column(*names: str, default: object = None) -> pd.Series:
        for name in names:
            if name in rows.columns:
                return rows[name]
        return pd.Series(default, index=rows.index, dtype=object if default is None else None)

    tuned_batch = "hparams.batch_size" in rows.columns
    batch = column("hparams.batch_size")
    if not tuned_batch and "batch_size" in rows.columns:
        # A batch_size column: the one hydra.sweeper.columns names, except in a row whose out-of-memory
        # retries halved it, where it is the batch that ran (oom_retries, accumulate_grad_batches beside it).
        retried = pd.to_numeric(column("oom_retries", default=0), errors="coerce").fillna(0) > 0
        batch = rows["batch_size"].where(~retried)
    out = pd.DataFrame(
        {
            "dataset": column("dataset", "task", "cell"),
            "Metric": column("metric").astype(str).map(metric_label),
            "test metric": column("test_value"),
            "Seed": column("seed"),
            "backbone": column("model", "cell"),
            "decoder": column("decoder").fillna("unknown"),
            "lr": column("hparams.lr", "lr"),
            "batch_size": batch,
            "weight_decay": column("hparams.optimizer_hparams.weight_decay", "weight_decay"),
            "n_trials": column("n_trials"),
            "early_stop_patience": column("early_stop_patience", "patience", "task.patience"),
            "batch_size_selection": "HPO" if tuned_batch else "Fixed",
            "partition_name": column("partition", "task.partition", default="default").fillna("default"),
            "frozen_or_full_ft": _finetuning(rows),
            "experiment_name": directory.name,
            "mlflow_run_id": column("mlflow_run_id"),
            "direction": column("direction"),
        }
    )
    out = out.reindex(columns=LAYOUT)
    return pd.concat([out, rows.reindex(columns=swept)], axis=1)


def _finetuning(rows: pd.DataFrame) -> pd.Series:
    """frozen or full_ft, as the cell ran: its frozen_or_full_ft column (sweeps from before it was
    written fine-tuned in full), unless freeze_backbone was a tuned param of the row."""
    given = rows["frozen_or_full_ft"] if "frozen_or_full_ft" in rows.columns else pd.Series(None, index=rows.index)
    given = given.fillna(FULL_FT).astype(str)
    if "hparams.freeze_backbone" in rows.columns:
        tuned = rows["hparams.freeze_backbone"]
        frozen = tuned.astype(str).str.lower().isin(["true", "1", "1.0"])
        given = given.where(tuned.isna(), frozen.map({True: FROZEN, False: FULL_FT}))
    return given


def _identity(layout: pd.DataFrame) -> dict[str, pd.Series]:
    """What merge.py needs of a tuning trial or a repeat to name its model as the scores name it."""
    keep = [
        "backbone",
        "dataset",
        "decoder",
        "partition_name",
        "partition name",
        "data_percentages",
        "frozen_or_full_ft",
        "experiment_name",
    ]
    return {name: layout[name] for name in keep}


# What the report reads of each table; a table without them is damaged, not a sweep's.
_NEEDED = {RESULTS: ["cell", "state", "value"], REPEATS: ["cell", "state", "seed", "test_value"]}


def _table(directory: Path, name: str) -> pd.DataFrame | None:
    """A sweep's results.csv or repeats.csv as it is, with the sweep's name; None when absent; a
    damaged one (empty, not text, not CSV, without the columns sweeps write) is refused, naming it."""
    path = directory / name
    if not path.is_file():
        return None
    try:
        rows = pd.read_csv(path, float_precision="round_trip")
    except pd.errors.EmptyDataError:  # a sweep always writes the header: an empty file was cut
        raise ReportError(
            f"{path} is empty (not even its header): it is damaged; a sweep rewrites it from its "
            f"journal when resumed (the same command with hydra.sweep.dir={directory})"
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as exc:
        reason = "it is not text" if isinstance(exc, UnicodeDecodeError) else str(exc).splitlines()[0]
        raise ReportError(
            f"{path} cannot be read as CSV ({reason}): a sweep rewrites it from its journal when "
            f"resumed (the same command with hydra.sweep.dir={directory})"
        ) from None
    missing = [c for c in _NEEDED[name] if c not in rows.columns]
    if missing and not rows.empty:
        raise ReportError(
            f"{path} lacks the column(s) {', '.join(missing)} that bench's sweeps write: it is damaged "
            f"or not a sweep's; a sweep rewrites it from its journal when resumed (the same command "
            f"with hydra.sweep.dir={directory})"
        )
    rows["sweep"] = directory.name
    return rows


def _from_mlflow(experiment: str, tracking_uri: str | None) -> list[Path]:
    """Each benchmark run's tables, downloaded next to each other as sweep dirs."""
    import os

    from mlflow import MlflowClient

    from bench.tracking import run_tree

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small CSV is noise
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"MLflow at {client.tracking_uri} has no experiment {experiment!r}")
    benchmarks = run_tree.find_runs(client, found.experiment_id, **{run_tree.LEVEL: "benchmark"})
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    directories = []
    for run in benchmarks:
        names = {a.path for a in client.list_artifacts(run.info.run_id)} & {RESULTS, REPEATS}
        if not names:
            continue
        target = root / Path(run.data.tags.get(run_tree.SWEEP_DIR, run.info.run_id)).name
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            client.download_artifacts(run.info.run_id, name, str(target))
        directories.append(target)
    if not directories:
        raise ReportError(f"MLflow experiment {experiment!r} has no benchmark run with {RESULTS} or {REPEATS}")
    return directories


def load_json(path: str, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"the {what} {path} cannot be read as JSON: {exc}") from None
