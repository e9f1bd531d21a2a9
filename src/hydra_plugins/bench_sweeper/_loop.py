"""The dispatch loop: keep n_jobs trials in flight across all cells until every cell is done.

No batch barrier: the moment a trial finishes, its slot gets the next trial of whichever cell has
done the least so far, so cells interleave and no slot waits for a slow sibling. Where the driver
composes job configs (Ray), the next trial is asked for and composed while every slot is busy
(the slow part of a launch, ~0.1 s), so a freed slot is refilled at once.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ._cells import Cell, trial_overrides
from ._dispatch import Dispatcher, Finished
from .observer import Observers
from ._results import best_trial, format_table
from ._studies import ATTR_DURATION, ATTR_ERROR, ATTR_INTERRUPTED, ATTR_JOB_DIR, ATTR_JOB_NUM, counts

log = logging.getLogger(__name__)


@dataclass
class CellRun:
    cell: Cell
    study: Any
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    in_flight: int = 0  # asked for: prepared or running
    stopped: str | None = None  # why the cell stopped early

    @property
    def done(self) -> int:
        return self.complete + self.pruned


@dataclass
class LoopSettings:
    n_trials: int
    slots: int
    max_failure_rate: float
    common_overrides: list[str]
    storage_location: str
    trial_key: str
    progress_every_s: float = 5.0


class DispatchLoop:
    def __init__(self, runs: list[CellRun], dispatcher: Dispatcher, settings: LoopSettings, first_job_num: int,
                 on_change: Callable[[], None], observers: Observers) -> None:
        self.runs, self.dispatcher, self.settings, self.observers = runs, dispatcher, settings, observers
        self.next_job_num = first_job_num
        self.on_change = on_change  # rewrites results.csv
        self.in_flight = 0  # submitted to the launcher: occupying a slot
        self.ready: deque[tuple[CellRun, Any, Any]] = deque()  # prepared, not yet submitted
        self._last_progress = time.monotonic()
        for run in runs:
            c = counts(run.study)
            run.complete, run.pruned, run.failed = c["complete"], c["pruned"], c["failed"]
            self._check_failures(run)

    def run(self) -> None:
        while True:
            self._maybe_progress()
            while self.in_flight < self.settings.slots and (item := self._take_ready() or self._prepare()):
                self._submit(*item)
            if self.in_flight == 0:
                break
            if self.dispatcher.prepare_ahead and not self.ready and (item := self._prepare()):
                self.ready.append(item)
            for finished in self.dispatcher.wait(timeout=1.0):
                self._finish(finished)
        log.info("final\n%s", self.progress_table())

    def _next_cell(self) -> CellRun | None:
        open_runs = [r for r in self.runs if not r.stopped and r.done + r.in_flight < self.settings.n_trials]
        return min(open_runs, key=lambda r: (r.done + r.in_flight, r.cell.index), default=None)

    def _prepare(self) -> tuple[CellRun, Any, Any] | None:
        run = self._next_cell()
        if run is None:
            return None
        trial = run.study.ask(run.cell.distributions)
        job_num = self.next_job_num
        self.next_job_num += 1
        trial.set_user_attr(ATTR_JOB_NUM, job_num)
        identity = {"cell": run.cell.label, "study": run.study.study_name, "storage": self.settings.storage_location,
                    "id": trial._trial_id, "number": trial.number}
        extra = self.observers.trial_prepared(cell=run.cell, trial=trial)
        overrides = trial_overrides(run.cell, self.settings.common_overrides, trial.params, identity,
                                    self.settings.trial_key, extra)
        run.in_flight += 1
        return run, trial, self.dispatcher.prepare(overrides, job_num)

    def _take_ready(self) -> tuple[CellRun, Any, Any] | None:
        while self.ready:
            run, trial, prepared = self.ready.popleft()
            if not run.stopped:
                return run, trial, prepared
            # Its cell stopped while it waited: it never ran, so it is not a failure of the cell.
            run.in_flight -= 1
            trial.set_user_attr(ATTR_INTERRUPTED, True)
            frozen = run.study.tell(trial, state=_trial_state("FAIL"))
            self.observers.trial_end(cell=run.cell, trial=frozen, job_return=None, error="never launched: cell stopped")
        return None

    def _submit(self, run: CellRun, trial: Any, prepared: Any) -> None:
        try:
            self.dispatcher.submit(prepared, ticket=(run, trial, time.monotonic()))
        except Exception as exc:
            # Refused at submission (e.g. sbatch rejects the resource request): every trial would
            # be, so record this one as failed and stop the sweep with the launcher's words.
            run.in_flight -= 1
            error = _describe(exc)
            trial.set_user_attr(ATTR_ERROR, error[-2000:])
            frozen = run.study.tell(trial, state=_trial_state("FAIL"))
            self.observers.trial_end(cell=run.cell, trial=frozen, job_return=None, error=error)
            raise
        self.in_flight += 1

    def _finish(self, finished: Finished) -> None:
        import optuna
        from optuna.trial import TrialState

        run, trial, started = finished.ticket
        run.in_flight -= 1
        self.in_flight -= 1
        trial.set_user_attr(ATTR_DURATION, round(time.monotonic() - started, 3))
        ret = finished.job_return
        if ret is not None and ret.hydra_cfg is not None:
            trial.set_user_attr(ATTR_JOB_DIR, str(ret.hydra_cfg.hydra.runtime.output_dir))

        state, value, error, abort = TrialState.COMPLETE, None, None, False
        if finished.launcher_error is not None:
            state, error = TrialState.FAIL, _describe(finished.launcher_error)
        else:
            try:
                value = float(ret.return_value)
                if not math.isfinite(value):
                    state, error, value = TrialState.FAIL, f"the job returned {value}", None
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except Exception as exc:
                state, error = TrialState.FAIL, _describe(exc)
                # Errors that will repeat for every trial of this cell (bad config, missing data)
                # say so with an `abort_cell` attribute: stop the cell now, not after the budget.
                abort = bool(getattr(exc, "abort_cell", False))
        if error:
            trial.set_user_attr(ATTR_ERROR, error[-2000:])
        frozen = run.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)

        if state == TrialState.COMPLETE:
            run.complete += 1
        elif state == TrialState.PRUNED:
            run.pruned += 1
        else:
            run.failed += 1
            log.warning("[%s] trial %d failed: %s", run.cell.label, trial.number, _last_line(error))
        if abort:
            self._stop(run, f"trial {trial.number} raised an error that every trial of this cell would repeat: "
                            f"{_last_line(error)}")
        self._check_failures(run)
        log.info("[%s] trial %d %s%s (%d/%d done)", run.cell.label, trial.number, state.name,
                 f" value={frozen.value:.6g}" if frozen.value is not None else "", run.done, self.settings.n_trials)
        self.observers.trial_end(cell=run.cell, trial=frozen, job_return=ret, error=error)
        self.on_change()

    def _check_failures(self, run: CellRun) -> None:
        if run.failed > self.settings.max_failure_rate * self.settings.n_trials:
            self._stop(run, f"{run.failed} failed trials exceed max_failure_rate={self.settings.max_failure_rate} "
                            f"x n_trials={self.settings.n_trials}")

    def _stop(self, run: CellRun, reason: str) -> None:
        if not run.stopped:
            run.stopped = reason
            log.error("[%s] cell stopped, no new trials: %s", run.cell.label, reason)

    def _maybe_progress(self) -> None:
        if time.monotonic() - self._last_progress >= self.settings.progress_every_s:
            self._last_progress = time.monotonic()
            log.info("progress\n%s", self.progress_table())

    def progress_table(self) -> str:
        rows = []
        for run in self.runs:
            best = best_trial(run.study)
            status = "stopped" if run.stopped else ("done" if run.done >= self.settings.n_trials else "")
            rows.append([run.cell.label, f"{run.done}/{self.settings.n_trials}", run.in_flight, run.pruned,
                         run.failed, best.value if best else "-", status])
        return format_table(["cell", "done", "running", "pruned", "failed", "best", ""], rows)


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def _trial_state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
