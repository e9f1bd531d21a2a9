"""Single- and multi-objective cells, in one place.

A cell's direction is a string ("minimize") or, for a multi-objective cell, a list with one
direction per objective (hydra.sweeper.direction: [minimize, maximize], as hydra-optuna-sweeper
writes it, or a bench task's task.direction list next to its task.metric list). Its job then
returns one value per objective, in that order. A multi-objective study has a Pareto front instead
of a best trial: best.csv lists its non-dominated trials, Optuna cannot prune it, and it has no
single configuration to repeat with seeds.
"""

from __future__ import annotations

from typing import Any

from omegaconf import ListConfig

from ._errors import SweepConfigError

DIRECTIONS = ("minimize", "maximize")  # Optuna's names
MINIMIZE, MAXIMIZE = DIRECTIONS


def normalized(direction: Any, where: str) -> str | list[str]:
    """A direction (or list of them) from config as plain strings; an Enum's name is accepted
    (hydra-optuna-sweeper's Direction.minimize)."""
    if isinstance(direction, (list, tuple, ListConfig)):
        out = [_one_direction(d, where) for d in direction]
        if not out:
            raise SweepConfigError(f"{where}=[] lists no objective: give a direction, or one per objective")
        return out[0] if len(out) == 1 else out
    return _one_direction(direction, where)


def _one_direction(direction: Any, where: str) -> str:
    name = str(getattr(direction, "name", direction))
    if name not in DIRECTIONS:
        raise SweepConfigError(
            f"{where}={direction!r} is not one of {list(DIRECTIONS)} (or a list of them, one per objective)"
        )
    return name


def directions(direction: str | list[str]) -> list[str]:
    return list(direction) if isinstance(direction, list) else [direction]


def is_multi(direction: str | list[str]) -> bool:
    return isinstance(direction, list) and len(direction) > 1


def as_text(value: Any) -> str:
    """A metric or direction list as one CSV/console field: "val/mIoU,cost/params_M"."""
    if isinstance(value, (list, tuple, ListConfig)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def study_is_multi(study: Any) -> bool:
    return len(study.directions) > 1


def front(study: Any) -> list[Any]:
    """The study's Pareto front (its best trials), in trial order; for one objective, its best."""
    try:
        return sorted(study.best_trials, key=lambda t: t.number)
    except ValueError:  # no COMPLETE trial yet
        return []


def value_columns(trial: Any) -> dict[str, Any]:
    """results.csv / best.csv columns of a multi-objective trial's values: value_0, value_1, ..."""
    return {f"value_{i}": v for i, v in enumerate(trial.values or [])}
