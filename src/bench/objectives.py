"""Multi-objective bench tasks: `task.metric` as a list, with a `task.direction` per metric.

    task:
      metric: [val/mIoU, cost/params_M]
      direction: [maximize, minimize]

Each name is a metric TerraTorch logs (val/...) or a cost bench measures (cost/...):
    cost/params_M          the model's parameters, in millions
    cost/val_images_per_s  inference throughput: images per second over the validation batches of
                           the last validation epoch, forward passes only (callbacks.CostMeter)
The first listed metric that is not a cost drives checkpointing, early stopping and the test
metric, as a single task.metric does; train() returns one value per listed metric, in order:
that metric's best value, any other val metric at the same (best) epoch, and the measured costs.
No torch import here: spec.py checks lists while composing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError
from hydra_plugins.bench_sweeper.api import DIRECTIONS

COST_PREFIX = "cost/"  # the one name convention: what bench measures, as opposed to what the model logs
PARAMS_M = f"{COST_PREFIX}params_M"
VAL_IMAGES_PER_S = f"{COST_PREFIX}val_images_per_s"
COST_METRICS = {
    PARAMS_M: "the model's parameters, in millions",
    VAL_IMAGES_PER_S: "validation images per second, forward passes only",
}


def is_cost(name: str) -> bool:
    return name.startswith(COST_PREFIX)


@dataclass(frozen=True)
class Objectives:
    names: tuple[str, ...]
    directions: tuple[str, ...]

    @property
    def primary(self) -> str:
        """The metric the model is selected on: the first that it learns (not a cost)."""
        return self.learned[0]

    @property
    def primary_direction(self) -> str:
        return self.directions[self.names.index(self.primary)]

    @property
    def learned(self) -> tuple[str, ...]:
        """The listed metrics the model logs (not costs), primary first: each must be logged."""
        return tuple(name for name in self.names if not is_cost(name))


def parse_objectives(metric: Any, direction: Any, task_name: str) -> Objectives | None:
    """A task's metric list and directions, checked; None for a single metric."""
    where = f"task '{task_name}'"
    if isinstance(metric, str) or metric is None:
        if direction is not None and not isinstance(direction, str):  # a list of directions for one metric
            listed = [str(d) for d in direction]
            raise ConfigError(
                f"{where}: task.metric is one metric ({metric}) but task.direction is a list of "
                f"{len(listed)} ({', '.join(listed) or 'none'}): give task.direction as one direction, "
                "or task.metric as a list with one metric per direction, in order"
            )
        return None
    names = [str(m) for m in metric]
    if not names:
        raise ConfigError(
            f"{where}: task.metric=[] lists no metric: give the validation metric the model is judged "
            "on (e.g. val/mIoU), or a list of metrics with one task.direction each"
        )
    directions = [direction] if isinstance(direction, str) else [str(d) for d in (direction or [])]
    if len(directions) != len(names):
        raise ConfigError(
            f"{where}: task.metric lists {len(names)} metrics ({', '.join(names)}) but task.direction "
            f"{len(directions)} ({', '.join(directions) or 'none'}): give one direction per metric, in order"
        )
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ConfigError(f"{where}: task.direction has {', '.join(map(repr, bad))}; use {' or '.join(DIRECTIONS)}")
    unknown = [n for n in names if is_cost(n) and n not in COST_METRICS]
    if unknown:
        known = "; ".join(f"{name} ({meaning})" for name, meaning in COST_METRICS.items())
        raise ConfigError(
            f"{where}: task.metric has {', '.join(unknown)}, which bench does not measure; cost metrics: {known}"
        )
    if all(is_cost(n) for n in names):
        raise ConfigError(
            f"{where}: task.metric lists only costs ({', '.join(names)}): add the validation metric the "
            "model is judged on (e.g. val/mIoU), which selects its checkpoint"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: task.metric lists a metric twice ({', '.join(names)})")
    return Objectives(tuple(names), tuple(directions))


def objective_values(
    objectives: Objectives, best_value: float, epochs: dict[int, dict[str, float]], costs: dict[str, float], mode: str
) -> list[float]:
    """One value per objective, in task.metric's order. `epochs`: each validation epoch's values of
    the learned metrics (callbacks.CostMeter); the others are read at the epoch where the primary
    one was best, the epoch ModelCheckpoint kept (the first of equals, as it keeps only a strictly
    better score)."""
    from bench.errors import MetricNotLoggedError

    primary = objectives.primary
    scored = {epoch: logged for epoch, logged in epochs.items() if primary in logged}
    pick = max if mode == "max" else min
    best_epoch = pick(scored, key=lambda e: scored[e][primary]) if scored else None
    values = []
    for name in objectives.names:
        if name == primary:
            values.append(best_value)
        elif name in costs:
            values.append(costs[name])
        elif best_epoch is not None and name in scored[best_epoch]:
            values.append(scored[best_epoch][name])
        else:
            logged = sorted(scored[best_epoch]) if best_epoch is not None else []
            raise MetricNotLoggedError(
                f"task.metric lists {name!r}, which was never logged; metrics logged: {', '.join(logged) or '(none)'}"
            )
    return values
