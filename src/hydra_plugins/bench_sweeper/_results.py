"""What a sweep leaves in its directory (results.csv, best.csv) and the tables it prints.

Everything is derived from the studies in the storage, every study of the sweep included (cells
the current command did not name, and older versions of changed cells), so a resumed sweep
rewrites complete files and a crashed driver loses nothing that Optuna had recorded.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._cells import bare_key
from ._cost import ATTR_CPU_HOURS, ATTR_GPU_HOURS, total
from ._files import atomic_write
from ._integrity import keep_before_shrinking
from ._objectives import as_text, front, study_is_multi, value_columns
from ._observer import TRACKER_RUN_ID_ATTR
from ._studies import (
    ATTR_DURATION,
    ATTR_ERROR,
    ATTR_FINISHED,
    ATTR_INTERRUPTED,
    ATTR_JOB_DIR,
    ATTR_JOB_NUM,
    ATTR_OUTPUTS,
    ATTR_REQUEUED_FROM,
    ATTR_SEED,
    ATTR_STARTED,
    STUDY_CELL,
    STUDY_VERSION,
    StudyRecord,
)
from ._warm import ATTR_WARM_START_FROM

if TYPE_CHECKING:
    import optuna

RESULTS_CSV = "results.csv"
BEST_CSV = "best.csv"
REPEATS_CSV = "repeats.csv"
TRIAL_COLUMNS = [
    "study",
    "study_version",
    "trial",
    "state",
    "value",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "started_at",
    "finished_at",
    "job_num",
    "job_dir",
    TRACKER_RUN_ID_ATTR,
    "interrupted",
    "error",
]


_WRITTEN: dict[str, int] = {}  # rows this process last wrote to each table


class Throttled:
    """Calls `write` (a rewrite of the tables, O(trials)) at most as often as keeps it to `share`
    of the driver's time: after a write that took w seconds, the next is skipped until w / share
    seconds have passed. So the amortised cost per trial stays a fixed fraction of the rest of the
    driver's work, however many rows the tables hold. The first call always writes; the sweep's
    end writes regardless (the caller calls `write` itself)."""

    def __init__(self, write: Callable[[], None], share: float = 0.05, clock: Callable[[], float] = time.monotonic):
        self.write, self.share, self.clock = write, share, clock
        self.next_at = -math.inf
        self.writes = 0

    def __call__(self) -> None:
        began = self.clock()
        if began < self.next_at:
            return
        self.write()
        self.writes += 1
        self.next_at = began + (self.clock() - began) / self.share


def _write_csv(path: str, rows: list[dict[str, Any]], leading: list[str]) -> None:
    if os.path.basename(path) in (RESULTS_CSV, REPEATS_CSV):  # never cut to fewer rows than it held
        keep_before_shrinking(path, len(rows), _WRITTEN)
        _WRITTEN[path] = len(rows)
    extra = sorted({key for row in rows for key in row} - set(leading))
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=leading + extra)
        writer.writeheader()
        writer.writerows(rows)


def _describing(record: StudyRecord) -> dict[str, Any]:
    """The columns naming a study's cell: its label, the app's columns (task, model, ...), its swept
    coordinates, metric and direction, whether or not they were swept."""
    attrs = record.attrs
    return {
        "cell": attrs.get(STUDY_CELL, ""),
        **(attrs.get("columns") or {}),
        **(attrs.get("coordinates") or {}),
        "metric": as_text(attrs.get("metric")),
        "direction": as_text(attrs.get("direction", "")),
    }


def _leading(records: list[StudyRecord]) -> list[str]:
    return list(dict.fromkeys(key for record in records for key in _describing(record)))


def _job_columns(trial: Any) -> dict[str, Any]:
    """What results.csv and repeats.csv both say about a trial's job: when and how long it ran,
    where, its tracker run, and how it ended."""
    attrs = trial.user_attrs
    return {
        "duration_s": attrs.get(ATTR_DURATION, ""),
        "gpu_hours": attrs.get(ATTR_GPU_HOURS, ""),
        "cpu_hours": attrs.get(ATTR_CPU_HOURS, ""),
        "started_at": iso_time(attrs.get(ATTR_STARTED)),
        "finished_at": iso_time(attrs.get(ATTR_FINISHED)),
        "job_dir": attrs.get(ATTR_JOB_DIR, ""),
        TRACKER_RUN_ID_ATTR: attrs.get(TRACKER_RUN_ID_ATTR, ""),
        "interrupted": bool(attrs.get(ATTR_INTERRUPTED, False)),
        "error": attrs.get(ATTR_ERROR, ""),
    }


def iso_time(unix: Any) -> str:
    """A wall-clock time the driver recorded (Unix seconds) as the tables give it: ISO 8601 in UTC,
    to the millisecond, with its zone (2026-05-04T09:30:12.345+00:00), so the text sorts in time
    order and any reader parses it (pandas.to_datetime, datetime.fromisoformat). "" when not recorded."""
    import datetime

    if unix is None or unix == "":
        return ""
    moment = datetime.datetime.fromtimestamp(float(unix), tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def trial_rows(records: list[StudyRecord], storage: Any) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        described = _describing(record)
        for trial in record.load(storage).get_trials(deepcopy=False):
            rows.append(
                {
                    **described,
                    "study": record.name,
                    "study_version": record.attrs.get(STUDY_VERSION, 1),
                    "trial": trial.number,
                    "state": table_state(trial),
                    **_values(trial),
                    "job_num": trial.user_attrs.get(ATTR_JOB_NUM, ""),
                    **_job_columns(trial),
                    # what the job returned besides its value (e.g. its out-of-memory retries)
                    **trial.user_attrs.get(ATTR_OUTPUTS, {}),
                    **_origin(trial),
                    **param_columns(trial),
                }
            )
    return rows


def param_columns(trial: Any) -> dict[str, Any]:
    """A trial's params under their config keys: a custom_search_space may suggest `+w` (a key the
    config lacks, in override syntax, as upstream's example does); its column is `w`, as a
    declared `+key` param's is."""
    return {bare_key(name): value for name, value in trial.params.items()}


def _values(trial: Any) -> dict[str, Any]:
    """value, or for a multi-objective trial value_0, value_1, ... (one per objective)."""
    values = trial.values or []
    if len(values) > 1:
        return {"value": "", **value_columns(trial)}
    return {"value": values[0] if values else ""}


def _origin(trial: Any) -> dict[str, Any]:
    """Where a trial's params came from, when not from the sampler: a warm start, a requeue."""
    attrs = trial.user_attrs
    return {key: attrs[key] for key in (ATTR_WARM_START_FROM, ATTR_REQUEUED_FROM) if key in attrs}


def write_results(sweep_dir: str, records: list[StudyRecord], storage: Any) -> str:
    path = os.path.join(sweep_dir, RESULTS_CSV)
    _write_csv(path, trial_rows(records, storage), _leading(records) + TRIAL_COLUMNS)
    return path


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial (a pruned trial never counts as best); None for a multi-objective
    study, which has a front instead (front())."""
    if study_is_multi(study):
        return None
    try:
        return study.best_trial
    except ValueError:
        return None


def worst_value(study: optuna.Study) -> float | None:
    """The worst finished trial's value (a pruned trial counts, at the last value it reported):
    next to the best, what tuning bought."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    if study_is_multi(study):
        return None
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    values = [t.value for t in finished if t.value is not None]
    pick = min if study.direction == StudyDirection.MAXIMIZE else max
    return pick(values) if values else None


def table_state(trial: Any) -> str:
    """The trial's state as the tables show it: INTERRUPTED for a trial whose job was stopped with
    its driver or never launched (Optuna keeps it FAIL, its params queued again), which is not a
    failure of the configuration."""
    return "INTERRUPTED" if trial.user_attrs.get(ATTR_INTERRUPTED) else trial.state.name


def _mark_counting(rows: list[dict[str, Any]]) -> None:
    """`counts`: the one row per study x seed that stands for the seed (its latest run that was not
    interrupted); a seed interrupted and run again on resume keeps both rows, only one counting."""
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        row["counts"] = False
        if row["state"] != "INTERRUPTED":
            key = (row["study"], row["seed"])
            if key not in latest or row["trial"] > latest[key]["trial"]:
                latest[key] = row
    for row in latest.values():
        row["counts"] = True


def repeat_rows(records: list[StudyRecord], storage: Any) -> list[dict[str, Any]]:
    """One row per cell x seed: the validation value its best checkpoint reached, what the job
    returned besides (test_value, every test metric, checkpoint), and where to find the run; a seed
    run again after an interruption has a row per run, `counts` marking the one that stands."""
    from ._repeats import REPEAT_BEST_TRIAL, REPEAT_N_TRIALS

    rows = []
    for record in records:
        described = _describing(record)
        for trial in record.load(storage).get_trials(deepcopy=False):
            attrs = trial.user_attrs
            if trial.state.name == "WAITING":
                continue  # a seed not run yet
            rows.append(
                {
                    **described,
                    "seed": attrs.get(ATTR_SEED, ""),
                    "state": table_state(trial),
                    "val_value": trial.value if trial.value is not None else "",
                    **attrs.get(ATTR_OUTPUTS, {}),
                    **_job_columns(trial),
                    "n_trials": record.attrs.get(REPEAT_N_TRIALS, ""),
                    "tuning_best_trial": record.attrs.get(REPEAT_BEST_TRIAL, ""),
                    "study": record.name,
                    "study_version": record.attrs.get(STUDY_VERSION, 1),
                    "trial": trial.number,
                    **param_columns(trial),
                }
            )
    _mark_counting(rows)
    return rows


def write_repeats(sweep_dir: str, records: list[StudyRecord], storage: Any) -> str | None:
    if not records:
        return None
    path = os.path.join(sweep_dir, REPEATS_CSV)
    _write_csv(
        path,
        repeat_rows(records, storage),
        _leading(records)
        + [
            "seed",
            "state",
            "counts",
            "val_value",
            "test_value",
            "checkpoint",
            "duration_s",
            "gpu_hours",
            "cpu_hours",
            TRACKER_RUN_ID_ATTR,
            "job_dir",
        ],
    )
    return path


def best_rows(records: list[StudyRecord], storage: Any, repeats: Sequence[StudyRecord] = ()) -> list[dict[str, Any]]:
    """One row per cell: its current study's best trial, the worst finished trial's value, and the
    test summary of its repeats (n_repeats, test_mean, test_std, test_iqm) when it has some."""
    from ._repeats import REPEAT_TUNED_BY, summary

    summaries = {r.attrs.get(REPEAT_TUNED_BY): summary(r.load(storage)) for r in repeats}
    repeat_costs = {r.attrs.get(REPEAT_TUNED_BY): total(r.load(storage).get_trials(deepcopy=False)) for r in repeats}
    rows = []
    for record in records:
        if not record.current:
            continue
        study = record.load(storage)
        cost = total(study.get_trials(deepcopy=False))
        extra = repeat_costs.get(record.name)
        spent = {
            "gpu_hours": cost.gpu_hours + (extra.gpu_hours if extra else 0.0),  # tuning and repeats
            "cpu_hours": cost.cpu_hours + (extra.cpu_hours if extra else 0.0),
        }
        if study_is_multi(study):  # its Pareto front: a row per non-dominated trial
            for trial in front(study):
                rows.append(
                    {
                        **_describing(record),
                        "best_value": "",
                        "best_trial": trial.number,
                        **value_columns(trial),
                        "job_dir": trial.user_attrs.get(ATTR_JOB_DIR, ""),
                        "study": record.name,
                        **spent,
                        **param_columns(trial),
                    }
                )
            continue
        best, worst = best_trial(study), worst_value(study)
        row = {
            **_describing(record),
            "best_value": best.value if best else "",
            "best_trial": best.number if best else "",
            "worst_value": worst if worst is not None else "",
            "job_dir": best.user_attrs.get(ATTR_JOB_DIR, "") if best else "",
            "study": record.name,
            **spent,
        }
        row.update(summaries.get(record.name, {}))
        row.update(param_columns(best) if best else {})
        rows.append(row)
    return rows


def write_best(
    sweep_dir: str, records: list[StudyRecord], storage: Any, repeats: Sequence[StudyRecord] = ()
) -> list[dict[str, Any]]:
    rows = best_rows(records, storage, repeats)
    summary_columns = ["n_repeats", "test_mean", "test_std", "test_iqm"] if repeats else []
    _write_csv(
        os.path.join(sweep_dir, BEST_CSV),
        rows,
        _leading([r for r in records if r.current])
        + ["best_value", "best_trial", "worst_value", *summary_columns, "gpu_hours", "cpu_hours", "job_dir", "study"],
    )
    return rows


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
