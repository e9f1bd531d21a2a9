"""Budgets in GPU-hours (or CPU-hours) and the cell-level convergence stop.

A trial starts only if what the sweep has spent (every study of the sweep dir, earlier runs and
cells this command did not name included), plus what is in flight, plus what the trial itself is
expected to cost, stays within hydra.sweeper.budget.gpu_hours / cpu_hours; the same holds per cell
for budget.per_cell. A trial in flight counts at the larger of what it has used so far and what a
trial of its cell costs on average, so the sweep stops at its allocation, not after it. Reaching
a budget is a planned end: the trials in flight finish, nothing new starts, and a resume with a
larger budget goes on where it stopped.

Budgets never leave a cell without its seed repeats: budget.per_cell caps a cell's tuning alone
(its repeats always run), and a tuning trial starts under the sweep's budget only if the repeats
still owed (every seed of every cell not yet repeated, at its cell's mean trial cost) fit after it.

A cell whose best value has not improved by more than budget.min_delta over budget.patience
finished trials stops tuning (and goes on to its repeats); whatever it did not spend is left to
the other cells.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cost import Cost, total
from ._errors import SweepConfigError
from ._studies import PHASE_TUNE

if TYPE_CHECKING:
    from ._loop_state import CellRun, Ticket

log = logging.getLogger(__name__)


def check_settings(conf: Any) -> None:
    """Impossible budgets, refused before anything is created."""
    for key in ("gpu_hours", "cpu_hours", "per_cell"):
        value = conf.get(key)
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise SweepConfigError(f"hydra.sweeper.budget.{key}={value!r}: give a positive number of hours, or null")
    patience = conf.get("patience")
    if patience is not None and not (isinstance(patience, int) and patience >= 1):
        raise SweepConfigError(
            f"hydra.sweeper.budget.patience={patience!r}: give a whole number of trials >= 1, or null"
        )
    min_delta = conf.get("min_delta") or 0.0
    if not isinstance(min_delta, (int, float)) or min_delta < 0:
        raise SweepConfigError(f"hydra.sweeper.budget.min_delta={min_delta!r} must be a number >= 0")


@dataclass(frozen=True)
class Refusal:
    reason: str
    sweep_wide: bool  # the whole sweep's budget (nothing new starts), not one cell's cap


UNIT_NAMES = {"gpu_hours": "GPU-hours", "cpu_hours": "CPU-hours"}


def hours(cost: Cost, unit: str) -> float:
    return cost.gpu_hours if unit == "gpu_hours" else cost.cpu_hours


class Budget:
    """What the sweep and each cell may still start. `spent`: the sweep dir's studies' costs when
    this driver started (in total, and per cell label its tuning's); add() keeps them current.
    `runs` (the loop's cell runs, repeats included) and `seeds` (repeats per cell) let tuning trials
    leave room for the repeats still owed."""

    def __init__(self, conf: Any, spent_total: Cost, spent_by_cell: dict[str, Cost], seeds: int = 0) -> None:
        self.limits = {unit: float(conf[unit]) for unit in ("gpu_hours", "cpu_hours") if conf.get(unit) is not None}
        # per_cell is in the unit of the sweep's budget: GPU-hours unless only cpu_hours is set.
        self.cell_unit = "cpu_hours" if set(self.limits) == {"cpu_hours"} else "gpu_hours"
        self.per_cell = conf.get("per_cell")
        self.spent = {"gpu_hours": spent_total.gpu_hours, "cpu_hours": spent_total.cpu_hours}
        self.by_cell = {
            label: {"gpu_hours": c.gpu_hours, "cpu_hours": c.cpu_hours} for label, c in spent_by_cell.items()
        }
        self.costs: dict[str, list[Cost]] = {}  # cell label -> costs of its finished trials (estimates)
        self.reached: Refusal | None = None  # why the sweep's budget stopped new trials
        self.seeds = seeds
        self.runs: list[CellRun] = []
        self._warned_no_gpus = False

    @property
    def active(self) -> bool:
        return bool(self.limits or self.per_cell)

    def add(self, label: str, cost: Cost, gpus_granted: float | None, tuning: bool = True) -> None:
        for unit in self.spent:
            self.spent[unit] += hours(cost, unit)
            if tuning:  # a cell's cap is on its tuning
                self.by_cell.setdefault(label, {"gpu_hours": 0.0, "cpu_hours": 0.0})[unit] += hours(cost, unit)
        if tuning:  # repeats train to the end: their cost would skew the estimate of a tuning trial
            self.costs.setdefault(label, []).append(cost)
        counts_gpus = "gpu_hours" in self.limits or (self.per_cell and self.cell_unit == "gpu_hours")
        if gpus_granted == 0 and counts_gpus and not self._warned_no_gpus:
            self._warned_no_gpus = True
            log.warning(
                "trials are granted no GPUs, so a budget in GPU-hours is never spent; on CPU set "
                "hydra.sweeper.budget.cpu_hours instead"
            )

    def learn(self, label: str, trials: Iterable[Any]) -> None:
        """Costs of a cell's trials from earlier runs of the sweep, for the estimates."""
        from ._cost import recorded

        self.costs.setdefault(label, []).extend(c for c in map(recorded, trials) if c is not None)

    def estimate(self, label: str, unit: str) -> float:
        """What one more trial of the cell is expected to cost: the mean of its finished trials, else
        of every finished trial, else nothing known yet (0)."""
        mine = self.costs.get(label) or [c for costs in self.costs.values() for c in costs]
        return sum(hours(c, unit) for c in mine) / len(mine) if mine else 0.0

    def _in_flight(self, ticket: Ticket, unit: str, now: float) -> float:
        used = hours(ticket.grant.for_seconds(now - ticket.started), unit) if ticket.grant and ticket.started else 0.0
        return max(used, self.estimate(ticket.run.cell.label, unit))

    def owed(self, unit: str) -> float:
        """The expected cost of the repeats not yet started: each seed of a cell still tuning (or
        whose repeats are not open yet), and each queued seed of the open ones."""
        opened = {r.cell.label for r in self.runs if r.phase != PHASE_TUNE}
        total_owed = 0.0
        for run in self.runs:
            if run.stopped:
                continue
            if run.phase != PHASE_TUNE:
                total_owed += run.waiting * self.estimate(run.cell.label, unit)
            elif run.cell.label not in opened:
                total_owed += self.seeds * self.estimate(run.cell.label, unit)
        return total_owed

    def refusal(self, run: CellRun, flying: Iterable[Ticket]) -> Refusal | None:
        """Why the cell may not start another trial now, or None. A repeat's own seed is among
        the repeats owed, so it needs no room beyond them."""
        if not self.active:
            return None
        now, flying = time.monotonic(), list(flying)
        label, tuning = run.cell.label, run.phase == PHASE_TUNE
        for unit, limit in self.limits.items():
            committed = self.spent[unit] + sum(self._in_flight(t, unit, now) for t in flying)
            owed = self.owed(unit)
            if committed + owed + (self.estimate(label, unit) if tuning else 0.0) > limit:
                reserved = f", {owed:.4g} kept for the repeats still owed" if owed and tuning else ""
                self.reached = Refusal(
                    f"budget.{unit}={limit:g} reached: {self.spent[unit]:.4g} spent, "
                    f"{committed - self.spent[unit]:.4g} in flight{reserved}",
                    sweep_wide=True,
                )
                return self.reached
        if self.per_cell and tuning:
            unit = self.cell_unit
            mine = self.by_cell.get(label, {}).get(unit, 0.0)
            committed = mine + sum(
                self._in_flight(t, unit, now) for t in flying if t.run.cell.label == label and t.run.phase == PHASE_TUNE
            )
            if committed + self.estimate(label, unit) > self.per_cell:
                return Refusal(
                    f"budget.per_cell={self.per_cell:g} {UNIT_NAMES[unit]} reached ({mine:.4g} spent)", sweep_wide=False
                )
        return None


def spent_by_cell(studies: Iterable[Any], label_of: Any) -> tuple[Cost, dict[str, Cost]]:
    """(the total of what the given studies' trials cost, and per cell label what its tuning
    studies' trials cost). label_of(study) -> (cell label, phase)."""
    by_cell: dict[str, Cost] = {}
    spent = Cost(0.0, 0.0)
    for study in studies:
        cost, (label, phase) = total(study.get_trials(deepcopy=False)), label_of(study)
        spent = Cost(spent.gpu_hours + cost.gpu_hours, spent.cpu_hours + cost.cpu_hours)
        if phase == PHASE_TUNE:
            before = by_cell.get(label, Cost(0.0, 0.0))
            by_cell[label] = Cost(before.gpu_hours + cost.gpu_hours, before.cpu_hours + cost.cpu_hours)
    return spent, by_cell


def converged(study: Any, patience: int | None, min_delta: float) -> str | None:
    """Why a cell's tuning has converged (its last `patience` finished trials, pruned ones included,
    did not beat the best before them by more than min_delta), or None."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    if not patience or len(study.directions) > 1:  # a front has no single best to stop improving
        return None
    finished = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
        key=lambda t: (t.datetime_complete.timestamp() if t.datetime_complete else 0.0, t.number),
    )
    if len(finished) <= patience:
        return None
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    best, since = None, 0
    for trial in finished:
        value = trial.value if trial.state == TrialState.COMPLETE else None  # a pruned value is partial
        if value is not None and (best is None or sign * (value - best) > min_delta):
            best, since = value, 0
        else:
            since += 1
            if value is not None and sign * (value - best) > 0:
                best = value  # better, but by no more than min_delta: the bar moves, the count goes on
    if best is not None and since >= patience:
        return f"converged: no improvement over {min_delta:g} in its last {since} finished trials (best {best:.4g})"
    return None
