"""The tuning table (tuning.csv) and curves, from the sweeps' results.csv: one row per cell.

Each cell counts its latest study version only (an older version is another experiment). Its
trials: `n_trials` finished (completed or pruned, as the sweeper counts them), of which `completed`
and `pruned`, and `failed` besides. Cells can end with different numbers of completed trials: a
per-cell budget cap, a convergence stop, failures, pruning. A cell with fewer completed trials
than another cell of its task is flagged (`fewer_trials`, `note`), since its model had less
tuning to find its best configuration; the report says so on the console and the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.inputs import latest
from hydra_plugins.bench_sweeper.api import MAXIMIZE

FLAG_COLUMNS = [
    "curve",
    "model",
    "dataset",
    "sweep",
    "cell",
    "n_trials",
    "completed",
    "pruned",
    "failed",
    "best_value",
    "best_at_trial",
    "still_improving",
    "fewer_trials",
    "note",
]
CURVE_COLUMNS = ["curve", "position", "best_so_far"]


def _states(rows: pd.DataFrame) -> pd.Series:
    """Trial states; a trial stopped with its driver was recorded FAIL before results.csv said
    INTERRUPTED (its `interrupted` column says so), and is no failure of its configuration."""
    if "interrupted" not in rows.columns:
        return rows["state"]
    return rows["state"].where(rows["interrupted"].astype(str).str.lower() != "true", "INTERRUPTED")


def _first(rows: pd.DataFrame, column: str, default: object) -> object:
    return rows[column].iloc[0] if column in rows.columns else default


def _name(rows: pd.DataFrame, cell: str) -> str:
    return " / ".join(str(rows[c].iloc[0]) for c in ("model", "task") if c in rows.columns) or str(cell)


def tuning_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell: best validation value after each finished trial, whether the best was still
    improving in the last quarter of the trials (a budget too small to trust), and its counts."""
    curves, flags = [], []
    if results.empty or "state" not in results.columns:
        return pd.DataFrame(columns=CURVE_COLUMNS), pd.DataFrame(columns=FLAG_COLUMNS)
    results = results[latest(results)]
    if "sweep" not in results.columns:
        results = results.assign(sweep="")
    for (sweep, cell), rows in results.sort_values("trial").groupby(["sweep", "cell"], sort=True):
        states = _states(rows).value_counts()
        finished = rows[rows["state"].isin(["COMPLETE", "PRUNED"])]
        counts = {
            "n_trials": len(finished),
            "completed": int(states.get("COMPLETE", 0)),
            "pruned": int(states.get("PRUNED", 0)),
            "failed": int(states.get("FAIL", 0)),
        }
        best, best_at = np.nan, 0
        if len(finished):
            values = finished["value"].where(finished["state"] == "COMPLETE")
            better = values.cummax() if finished["direction"].iloc[0] == MAXIMIZE else values.cummin()
            better = better.ffill()  # a pruned trial (no value) keeps the best so far, it does not erase it
            best = better.iloc[-1]
            positions = np.arange(1, len(finished) + 1)
            best_at = int(positions[(better == best).to_numpy()][0]) if pd.notna(best) else 0
            curves.append(
                pd.DataFrame(
                    {
                        "curve": _name(rows, cell),
                        "sweep": sweep,
                        "cell": cell,
                        "position": positions,
                        "best_so_far": better.to_numpy(),
                    }
                )
            )
        flags.append(
            {
                "curve": _name(rows, cell),
                "sweep": sweep,
                "cell": cell,
                **counts,
                "best_value": best,
                "best_at_trial": best_at,
                "still_improving": bool(len(finished)) and best_at > 0.75 * len(finished),
                "model": _first(rows, "model", cell),
                "dataset": _first(rows, "dataset", _first(rows, "task", cell)),
            }
        )
    flags = _compare(pd.DataFrame(flags))
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    # One name per line of the plot: a cell named alike in two sweeps gets its sweep's name too.
    twice = flags.groupby("curve")["sweep"].transform("nunique") > 1
    flags.loc[twice, "curve"] = flags.loc[twice, "curve"] + " (" + flags.loc[twice, "sweep"].astype(str) + ")"
    if not curves.empty:
        renamed = flags.set_index(["sweep", "cell"])["curve"]
        curves["curve"] = [renamed[(s, c)] for s, c in zip(curves["sweep"], curves["cell"])]
        curves = curves.drop(columns=["sweep", "cell"])
    return curves, flags[FLAG_COLUMNS]


def _compare(flags: pd.DataFrame) -> pd.DataFrame:
    """fewer_trials and note: completed trials below the most any cell of the same dataset got."""
    most = flags.groupby("dataset")["completed"].transform("max")
    flags["fewer_trials"] = flags["completed"] < most
    notes = []
    for row, top in zip(flags.itertuples(), most):
        said = []
        if row.fewer_trials:
            said.append(f"{row.completed} completed tuning trials, {top} for another model on {row.dataset}")
        if row.failed or row.pruned:
            said.append(f"{row.failed} failed, {row.pruned} pruned")
        notes.append("; ".join(said))
    flags["note"] = notes
    return flags
