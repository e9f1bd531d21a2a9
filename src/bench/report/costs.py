"""The compute-cost table: what each model x task spent, tuning and repeats apart.

From the sweeps' results.csv (tuning trials) and repeats.csv (seed repeats), whose gpu_hours and
cpu_hours columns the sweeper fills with each trial's grant x its run time (SLURM: sacct). Every
trial that ran counts, failed, pruned and superseded ones included: they were spent; a WAITING
trial never ran. A figure that is unknown stays empty, never zero: a model x dataset scored only
by a leaderboard CSV, or by a sweep written before bench accounted costs. A cell whose trials
record some figures and not others (one still RUNNING, or a sweep resumed across that change) sums
the known ones.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = [
    "model",
    "dataset",
    "tuning_trials",
    "tuning_gpu_hours",
    "repeats_gpu_hours",
    "gpu_hours",
    "tuning_cpu_hours",
    "repeats_cpu_hours",
    "cpu_hours",
]
UNITS = ("gpu_hours", "cpu_hours")


def _named(rows: pd.DataFrame) -> pd.DataFrame:
    """Model and dataset as datasets.csv names them (the dataset, else task, and model columns, else the cell)."""
    rows = rows[rows["state"] != "WAITING"] if "state" in rows.columns else rows  # queued, never ran
    cell = rows["cell"].astype(str) if "cell" in rows.columns else pd.Series("", index=rows.index)
    return rows.assign(
        model=rows["model"].astype(str) if "model" in rows.columns else cell,
        dataset=next((rows[c].astype(str) for c in ("dataset", "task") if c in rows.columns), cell),
    )


def _sums(rows: pd.DataFrame, phase: str) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=["model", "dataset", f"{phase}_trials"])
    rows = _named(rows)
    out = rows.groupby(["model", "dataset"], sort=True).size().rename(f"{phase}_trials").to_frame()
    for unit in UNITS:
        values = (
            pd.to_numeric(rows[unit], errors="coerce") if unit in rows.columns else pd.Series(float("nan"), rows.index)
        )
        # min_count=1: a cell whose trials all lack the figure stays empty instead of reading 0
        out[f"{phase}_{unit}"] = values.groupby([rows["model"], rows["dataset"]]).sum(min_count=1)
    return out.reset_index()


def has_costs(*frames: pd.DataFrame) -> bool:
    """Whether any input table carries a gpu_hours or cpu_hours column at all."""
    return any(not frame.empty and set(UNITS) & set(frame.columns) for frame in frames)


def cost_table(tuning: pd.DataFrame, repeats: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame | None:
    """One row per model x dataset, those of `scored` (model, dataset: the report's scores) and those
    the sweeps spent on without a score yet; None when no input recorded any cost."""
    if not has_costs(tuning, repeats):
        return None
    swept = pd.merge(_sums(tuning, "tuning"), _sums(repeats, "repeats"), on=["model", "dataset"], how="outer")
    # A model x dataset some sweep ran: tuning_trials is known (0 when only repeats ran there).
    swept["tuning_trials"] = swept["tuning_trials"].fillna(0)
    pairs = scored[["model", "dataset"]].astype(str).drop_duplicates()
    table = pd.merge(pairs, swept, on=["model", "dataset"], how="outer")
    for unit in UNITS:
        parts = table.reindex(columns=[f"tuning_{unit}", f"repeats_{unit}"]).astype(float)
        table[unit] = parts.sum(axis=1, min_count=1)
    table["tuning_trials"] = table["tuning_trials"].astype("Int64")  # empty where no sweep ran it
    return table.reindex(columns=COLUMNS).sort_values(["model", "dataset"]).reset_index(drop=True)


def cost_matrix(costs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """For the page: models x datasets of GPU-hours (CPU-hours when every GPU figure is 0 or
    unknown: no trial held a GPU), with each model's total over the datasets whose cost is known."""
    unit = "gpu_hours" if costs["gpu_hours"].fillna(0).gt(0).any() else "cpu_hours"
    matrix = costs.set_index(["model", "dataset"])[unit].astype(float).unstack("dataset")  # unknown stays NaN
    matrix["total"] = matrix.sum(axis=1, min_count=1)
    caption = f"Compute cost ({'GPU' if unit == 'gpu_hours' else 'CPU'}-hours per model x task, tuning and repeats)"
    return caption, matrix.reset_index().rename_axis(columns=None)
