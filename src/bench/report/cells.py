"""The per-cell table (cells.csv and the page): per tuned cell its chosen hyperparameters, its best
validation value, its trials completed, pruned and failed, and its MLflow run.

The run is the chosen trial's (its mlflow_run_id in results.csv), where the sweep's mlflow.json
says which tracking store holds it. An http(s) store gets a link to MLflow's UI at
<uri>/#/runs/<run id>, a route that finds the run's experiment itself, so the report asks the
server nothing; a local store (a file or SQLite database) gets the run id and the `mlflow ui`
command that serves it.
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

import pandas as pd

from bench.report.analysis import Cell, params_text

COLUMNS = ["model", "dataset", "chosen", "best_value", "completed", "pruned", "failed", "mlflow_run_id", "mlflow"]


def _tracking_uri(sweep: Path | None) -> str | None:
    from bench.tracking.sweep_callback import TRACKING_FILE

    if sweep is None or not (sweep / TRACKING_FILE).is_file():
        return None
    try:
        return str(json.loads((sweep / TRACKING_FILE).read_text())["tracking_uri"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mlflow_place(uri: str | None, run: str) -> str:
    """Where to see the run: a UI link (http) or the command that serves a local store."""
    if not run or uri is None:
        return ""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/runs/{run}"
    return f"run {run}: mlflow ui --backend-store-uri {shlex.quote(uri)}"


def _run_id(cell: Cell) -> str:
    if cell.best_trial is None or "mlflow_run_id" not in cell.rows.columns:
        return ""
    chosen = cell.rows.loc[cell.rows["trial"] == cell.best_trial, "mlflow_run_id"].dropna()
    return str(chosen.iloc[0]) if len(chosen) else ""


def table(cells: list[Cell], flags: pd.DataFrame, sweep_dirs: list[Path]) -> pd.DataFrame:
    """One row per cell, in tuning.csv's order (flags: its rows)."""
    dirs = {d.name: d for d in sweep_dirs}
    by_name = {(c.sweep, c.name): c for c in cells}
    rows = []
    for flag in flags.itertuples():
        cell = by_name.get((str(flag.sweep), flag.curve))
        run = _run_id(cell) if cell else ""
        rows.append(
            {
                "model": flag.model,
                "dataset": flag.dataset,
                "chosen": params_text(cell.params) if cell else "",
                "best_value": flag.best_value,
                "completed": flag.completed,
                "pruned": flag.pruned,
                "failed": flag.failed,
                "mlflow_run_id": run,
                "mlflow": mlflow_place(_tracking_uri(dirs.get(str(flag.sweep))), run),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def to_html(frame: pd.DataFrame) -> str:
    """The table with its MLflow column as links where it is a URL."""
    header = ["model", "dataset", "chosen hyperparameters", "best val.", "completed", "pruned", "failed", "MLflow"]
    lines = []
    for row in frame.itertuples():
        place = str(row.mlflow)
        link = (
            f'<a href="{html.escape(place)}">run {html.escape(str(row.mlflow_run_id))}</a>'
            if place.startswith("http")
            else html.escape(place)
        )
        value = f"{row.best_value:.4g}" if pd.notna(row.best_value) else ""
        cells = [html.escape(str(v)) for v in (row.model, row.dataset, row.chosen, value)]
        cells += [str(int(v)) for v in (row.completed, row.pruned, row.failed)] + [link]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    return f'<table class="cells"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
