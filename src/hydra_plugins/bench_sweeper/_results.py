"""What a sweep leaves in its directory (results.csv, best.csv) and prints (progress, best table).

Everything is derived from the studies in the storage, so a resumed sweep rewrites complete files
and a crashed driver loses nothing that Optuna had recorded.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._studies import ATTR_DURATION, ATTR_ERROR, ATTR_INTERRUPTED, ATTR_JOB_DIR, ATTR_JOB_NUM

if TYPE_CHECKING:
    import optuna

    from ._cells import Cell

RESULTS_CSV = "results.csv"
BEST_CSV = "best.csv"
# Filled by the MLflow tracking callback when it is enabled; the column is always there.
ATTR_MLFLOW_RUN_ID = "mlflow_run_id"


def _write_csv(path: str, rows: list[dict[str, Any]], leading: list[str]) -> None:
    extra = sorted({key for row in rows for key in row} - set(leading))
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=leading + extra)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)  # readers never see a half-written file


def trial_rows(cells_and_studies: Iterable[tuple[Cell, optuna.Study]]) -> list[dict[str, Any]]:
    rows = []
    for cell, study in cells_and_studies:
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            row = {
                "cell": cell.label, **cell.coordinates, "study": study.study_name, "trial": trial.number,
                "state": trial.state.name, "value": trial.value if trial.value is not None else "",
                "duration_s": attrs.get(ATTR_DURATION, ""), "job_num": attrs.get(ATTR_JOB_NUM, ""),
                "job_dir": attrs.get(ATTR_JOB_DIR, ""), ATTR_MLFLOW_RUN_ID: attrs.get(ATTR_MLFLOW_RUN_ID, ""),
                "interrupted": bool(attrs.get(ATTR_INTERRUPTED, False)), "error": attrs.get(ATTR_ERROR, ""),
            }
            row.update(trial.params)
            rows.append(row)
    return rows


def write_results(sweep_dir: str, cells_and_studies: list[tuple[Cell, optuna.Study]]) -> str:
    axes = list(dict.fromkeys(k for cell, _ in cells_and_studies for k in cell.coordinates))
    leading = ["cell", *axes, "study", "trial", "state", "value", "duration_s", "job_num", "job_dir",
               ATTR_MLFLOW_RUN_ID, "interrupted", "error"]
    path = os.path.join(sweep_dir, RESULTS_CSV)
    _write_csv(path, trial_rows(cells_and_studies), leading)
    return path


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial  # COMPLETE trials only: a pruned trial never counts as best
    except ValueError:
        return None


def write_best(sweep_dir: str, cells_and_studies: list[tuple[Cell, optuna.Study]]) -> list[dict[str, Any]]:
    rows = []
    for cell, study in cells_and_studies:
        best = best_trial(study)
        row = {"cell": cell.label, **cell.coordinates, "metric": cell.metric or "", "direction": cell.direction,
               "best_value": best.value if best else "", "best_trial": best.number if best else "",
               "job_dir": best.user_attrs.get(ATTR_JOB_DIR, "") if best else ""}
        row.update(best.params if best else {})
        rows.append(row)
    axes = list(dict.fromkeys(k for cell, _ in cells_and_studies for k in cell.coordinates))
    _write_csv(os.path.join(sweep_dir, BEST_CSV), rows,
               ["cell", *axes, "metric", "direction", "best_value", "best_trial", "job_dir"])
    return rows


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
