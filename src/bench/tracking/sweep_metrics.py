"""What the MLflow tracker logs about compute and Pareto fronts, from the sweeper's records.

cost    a trial's gpu_hours and cpu_hours (the sweeper's accounting: observer.COST_ATTRS) on its
        run, and running totals on its cell run and the benchmark run (resumed runs continue
        from the totals they show)
front   a multi-objective cell's Pareto front, as a table artifact of its cell run
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hydra_plugins.bench_sweeper.api import COST_ATTRS, TRACKER_RUN_ID_ATTR, mask_data

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

COST_METRICS = COST_ATTRS  # logged as metrics of the same names
FRONT_ARTIFACT = "pareto_front.json"


def costs_of(run: Run) -> dict[str, float]:
    """The totals an existing (resumed) cell or benchmark run shows."""
    return {key: float(run.data.metrics.get(key, 0.0)) for key in COST_METRICS}


def log_trial_cost(
    client: MlflowClient, totals: dict[str, dict[str, float]], run_id: str, parents: list[str], attrs: dict[str, Any]
) -> None:
    """The trial's figures on its run, and the parents' running totals (kept in `totals`)."""
    cost = {key: float(attrs[key]) for key in COST_METRICS if key in attrs}
    if not cost:
        return
    for key, value in cost.items():
        client.log_metric(run_id, key, value)
    for parent in parents:
        mine = totals.setdefault(parent, dict.fromkeys(COST_METRICS, 0.0))
        for key, value in cost.items():
            mine[key] += value
            client.log_metric(parent, key, mine[key])


def log_front(client: MlflowClient, cell_run: str, cell: Any, front: list) -> None:
    """One row per non-dominated trial: its number, values by metric name, params and run id;
    the whole front, rewritten as it changes."""
    import pandas as pd

    objectives = len(front[0].values) if front else 0
    names = cell.metric if isinstance(cell.metric, list) else [f"objective_{i}" for i in range(objectives)]
    rows = [
        {
            "trial": t.number,
            **dict(zip(names, t.values)),
            **mask_data(dict(t.params)),
            "mlflow_run_id": t.user_attrs.get(TRACKER_RUN_ID_ATTR, ""),
        }
        for t in front
    ]
    # MLflow's table format (log_table's JSON, orient=split), written whole: log_table would append
    # each new front to the old ones.
    client.log_text(cell_run, pd.DataFrame(rows).to_json(orient="split", index=False), FRONT_ARTIFACT)
    client.log_metric(cell_run, "front_size", len(rows))
