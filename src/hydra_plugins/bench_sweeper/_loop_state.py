"""What the dispatch loop (_loop.py) keeps per cell and per trial in flight, and its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._budget import Budget
from ._cells import Cell
from ._cost import Grant
from ._studies import PHASE_REPEAT, PHASE_TUNE

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig


@dataclass
class CellRun:
    """One study's trials in this loop: a cell's tuning, or its seed repeats."""

    cell: Cell
    study: optuna.Study
    target: int = 0  # tuning: finished trials wanted (n_trials); repeats: the number of seeds
    count_pruned: bool = True  # tuning: a pruned trial counts towards target (hydra.sweeper.count_pruned)
    phase: str = PHASE_TUNE
    distributions: dict[str, Any] | None = None  # None: the cell's search space
    waiting: int = 0  # repeats: enqueued seeds not yet asked for
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    in_flight: int = 0  # asked for: prepared or running
    stopped: str | None = None  # why the cell stopped early: its failures (the sweep exits non-zero)
    ended: str | None = None  # why it takes no more trials though it wants more: converged, cell budget
    durations: list[float] = field(default_factory=list)  # of the trials that ended in this run
    started: float | None = None  # monotonic time its first trial started in this run

    @property
    def done(self) -> int:
        return self.complete + (self.pruned if self.count_pruned or self.phase != PHASE_TUNE else 0)

    @property
    def label(self) -> str:
        return self.cell.label if self.phase == PHASE_TUNE else f"{self.cell.label} repeats"

    @property
    def tuning_done(self) -> bool:
        return self.done >= self.target or self.ended is not None

    @property
    def wants_trials(self) -> bool:
        if self.stopped or self.ended:
            return False
        if self.phase == PHASE_REPEAT:  # exactly its seeds: a failed repeat is not replaced
            return self.waiting > 0
        return self.done + self.in_flight < self.target


@dataclass
class Ticket:
    run: CellRun
    trial: optuna.trial.Trial
    job_num: int
    started: float
    values: dict[str, Any] = field(default_factory=dict)  # what the job is given: params (and a repeat's seed)
    grant: Grant | None = None  # what its launcher gave it (_cost.py); None: unknown (taken over)


@dataclass
class LoopSettings:
    slots: int
    max_failure_rate: float
    common_overrides: list[str]
    storage_location: str
    trial_key: str
    seed_key: str = "seed"  # where a repeat's job gets its seed (hydra.sweeper.seed_key)
    folds: int | None = None  # hydra.sweeper.folds: told to every tuning job as <trial_key>.folds
    # cell's finished tuning run -> its repeats run, or why it has none (None: no repeats wanted)
    open_repeats: Callable[[CellRun], CellRun | str] | None = None
    budget: Budget | None = None
    patience: int | None = None  # convergence stop (_budget.converged)
    min_delta: float = 0.0
    # Warm starts (_warm.py): a cell's new study -> configurations enqueued in it (a count) ...
    warm_start: Callable[[CellRun], int] | None = None
    # ... and whether a cell not started yet should wait for its siblings (they seed it).
    defer: Callable[[CellRun, list[CellRun]], bool] | None = None
    # hydra.sweeper.custom_search_space: (the cell's config, a new trial) -> more params suggested on it
    configure: Callable[[DictConfig, optuna.trial.Trial], None] | None = None
