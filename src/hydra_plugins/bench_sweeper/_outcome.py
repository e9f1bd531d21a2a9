"""What a finished job means for its trial: COMPLETE with a value (and outputs), PRUNED, or FAIL
with its error (masked), and whether every trial of its cell would fail the same way."""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from omegaconf import ListConfig

from ._errors import CellError
from ._masking import mask_text
from ._private_apis import job_outcome

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from optuna.trial import TrialState


@dataclass
class Outcome:
    state: TrialState
    value: float | list[float] | None = None  # a list: one per objective
    outputs: dict[str, Any] = field(default_factory=dict)  # what a job returned besides its objective
    error: str | None = None
    abort: bool = False  # a CellError: every trial of this cell would repeat it


def judge(
    job_return: JobReturn | None, launcher_error: BaseException | None = None, objectives: int | None = 1
) -> Outcome:
    """`objectives`: how many values the cell's study expects (one per direction); None takes any
    number (an observer reading an outcome the driver judges)."""
    import optuna
    from optuna.trial import TrialState

    if launcher_error is not None:
        return Outcome(TrialState.FAIL, error=mask_text(_describe(launcher_error)))
    if job_return is None:
        return Outcome(TrialState.FAIL, error="the launcher returned no result for the job")
    completed, returned = job_outcome(job_return)
    if completed:
        value, outputs = split_outcome(returned)
        got = len(value) if isinstance(value, list) else 1
        if objectives is not None and got != objectives:
            # Every trial of the cell would return the same shape: a CellError-like stop.
            return Outcome(
                TrialState.FAIL,
                outputs=outputs,
                abort=True,
                error=mask_text(
                    f"the job returned {got} value(s) ({returned!r}) but its study has {objectives} objective(s), one per "
                    "direction: return one value per objective, in the order of the directions, or give as many "
                    "directions (hydra.sweeper.direction, or the cell's direction_key) as the job returns values"
                ),
            )
        if value is None or (isinstance(value, list) and None in value):
            return Outcome(
                TrialState.FAIL, outputs=outputs, error=mask_text(f"the job returned {returned!r}, not finite numbers")
            )
        return Outcome(TrialState.COMPLETE, cast("float | list[float]", value), outputs)
    if isinstance(returned, optuna.TrialPruned):
        return Outcome(TrialState.PRUNED)
    return Outcome(TrialState.FAIL, error=mask_text(_describe(returned)), abort=isinstance(returned, CellError))


def split_outcome(outcome: Any) -> tuple[float | list[float | None] | None, dict[str, Any]]:
    """A job returns its objective (a number, or a tuple/list: one per objective), or a mapping with
    it at "value" and anything else it wants kept with the trial (a repeat: its test metrics and
    checkpoint)."""
    if isinstance(outcome, Mapping):
        outputs = {str(k): _plain(v) for k, v in outcome.items() if k != "value"}
        return _as_values(outcome.get("value")), outputs
    return _as_values(outcome), {}


def _as_values(outcome: Any) -> float | list[float | None] | None:
    if isinstance(outcome, (list, tuple, ListConfig)):
        values = [_as_value(v) for v in outcome]
        return values[0] if len(values) == 1 else values
    return _as_value(outcome)


def _plain(value: Any) -> Any:
    """JSON-storable: numbers as floats (tensors and numpy scalars too), the rest as text."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _as_value(outcome: Any) -> float | None:
    try:
        value = float(outcome)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
