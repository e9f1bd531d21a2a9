"""Cost against accuracy: each model's compute (tuning and repeats, over the tasks of the aggregate)
against its normalised aggregate, the models no other beats on both marked as the front.

GPU-hours, or CPU-hours when no trial held a GPU (costs.py's cost_matrix makes the same choice).
A model is on the front when no other model costs no more and scores at least as much, being
strictly better on one. No figure without an aggregate (one model, or no normalised score) or
without costs: the page says why.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["model", "group", "value", "ci_low", "ci_high", "hours", "unit", "on_front"]


def points(groups: pd.DataFrame, costs: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """One row per model with an aggregate and a known cost; or no rows and the reason."""
    if costs is None:
        return pd.DataFrame(columns=COLUMNS), "no input recorded GPU- or CPU-hours"
    scored = groups.dropna(subset=["value"])
    if scored.empty:
        return pd.DataFrame(columns=COLUMNS), "no normalised aggregate (it needs two models, or --normalizer)"
    group = str(scored["group"].iloc[0])  # the first group: the page's headline aggregate
    scored = scored[scored["group"] == group]
    unit = "gpu_hours" if costs["gpu_hours"].fillna(0).gt(0).any() else "cpu_hours"
    hours = costs.groupby("model")[unit].sum(min_count=1)
    table = scored.assign(hours=scored["model"].map(hours), unit=unit).dropna(subset=["hours"])
    if table.empty:
        return pd.DataFrame(columns=COLUMNS), "no cost recorded for the models with an aggregate"
    table = table.assign(on_front=[_on_front(r, table) for r in table.itertuples()])
    return table.reindex(columns=COLUMNS).reset_index(drop=True), ""


def _on_front(row: object, table: pd.DataFrame) -> bool:
    hours, value = row.hours, row.value  # type: ignore[attr-defined]
    others = table[table["model"] != row.model]  # type: ignore[attr-defined]
    dominated = (
        (others["hours"] <= hours)
        & (others["value"] >= value)
        & ((others["hours"] < hours) | (others["value"] > value))
    )
    return not dominated.any()


def plot(table: pd.DataFrame, path: Path) -> Path:
    from bench.report.page import figure, save

    fig, (ax,) = figure(1, 1, width=6, height=4)
    unit = "GPU" if table["unit"].iloc[0] == "gpu_hours" else "CPU"
    low = (table["value"] - table["ci_low"]).clip(lower=0).fillna(0)
    high = (table["ci_high"] - table["value"]).clip(lower=0).fillna(0)
    for on_front, marker in ((False, "o"), (True, "*")):
        rows = table["on_front"] == on_front
        if not rows.any():
            continue
        ax.errorbar(
            table.loc[rows, "hours"],
            table.loc[rows, "value"],
            yerr=[low[rows], high[rows]],
            fmt=marker,
            markersize=11 if on_front else 6,
            capsize=3,
            label="on the front" if on_front else "dominated",
        )
    front = table[table["on_front"]].sort_values("hours")
    ax.step(front["hours"], front["value"], where="post", linestyle="--", color="grey", alpha=0.7)
    for row in table.itertuples():
        ax.annotate(str(row.model), (row.hours, row.value), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"{unit}-hours (tuning and repeats)")
    ax.set_ylabel(f"normalised aggregate ({table['group'].iloc[0]})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save(fig, path)
