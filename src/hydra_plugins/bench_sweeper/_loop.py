"""The dispatch loop: keep n_jobs trials in flight across all cells until every cell is done.

No batch barrier: the moment a trial finishes, its slot gets the next trial of whichever cell has
done the least so far, so cells interleave and no slot waits for a slow sibling. Where the driver
composes job configs (Ray), the next trial is asked for and composed while every slot is busy
(the slow part of a launch, ~0.1 s), so a freed slot is refilled at once.

A cell whose tuning is done gets its seed repeats (_repeats.py) at once, as another run in the
same loop and slots: one cell's repeats run while others still tune, and the benchmark drains once.

If the loop is interrupted (Ctrl-C, SIGTERM, a launcher error), every trial in flight is stopped
through its launcher and recorded as interrupted, with its parameters queued again for a resume.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._budget import converged
from ._cells import trial_overrides
from ._console import Console
from ._cost import Cost, Grant
from ._cost import record as record_cost
from ._dispatch import Dispatcher, Finished, Prepared
from ._errors import LaunchError, SweepError
from ._loop_state import CellRun, LoopSettings, Ticket
from ._masking import mask_data
from ._objectives import directions, front, is_multi
from ._observer import Observers
from ._outcome import judge, last_line
from ._private_apis import running_trial, trial_id
from ._studies import (
    ATTR_DURATION,
    ATTR_ERROR,
    ATTR_FINISHED,
    ATTR_JOB_DIR,
    ATTR_JOB_NUM,
    ATTR_LAUNCHER_JOB,
    ATTR_OUTPUTS,
    ATTR_SEED,
    ATTR_STARTED,
    PHASE_REPEAT,
    PHASE_TUNE,
    counts,
    mark_interrupted,
)

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from optuna.trial import FrozenTrial, Trial

log = logging.getLogger(__name__)


class DispatchLoop:
    def __init__(
        self,
        runs: list[CellRun],
        dispatcher: Dispatcher,
        settings: LoopSettings,
        first_job_num: int,
        on_change: Callable[[], None],
        observers: Observers,
        console: Console,
    ) -> None:
        self.runs, self.dispatcher, self.settings, self.observers = runs, dispatcher, settings, observers
        self.console = console
        self.next_job_num = first_job_num
        self.on_change = on_change  # rewrites results.csv
        self.flying: dict[int, Ticket] = {}  # submitted to the launcher: occupying a slot
        self.ready: deque[tuple[Ticket, Prepared]] = deque()  # prepared, not yet submitted
        self._ids = itertools.count()
        self.repeats: dict[str, CellRun] = {}  # cell label -> its repeats run
        self._repeats_asked: set[str] = set()  # cells whose repeats were opened, or had none to open
        for run in runs:
            self._count(run)

    def _count(self, run: CellRun) -> None:
        c = counts(run.study)
        run.complete, run.pruned, run.failed, run.waiting = c["complete"], c["pruned"], c["failed"], c["waiting"]
        self._check_failures(run)
        self._check_converged(run)

    def start_repeats(self, run: CellRun, resumed: bool = False) -> None:
        """Queue the cell's repeats once its tuning is done (every trial finished, none in flight),
        or at once when an earlier run of the sweep had started them (`resumed`)."""
        if self.settings.open_repeats is None or run.phase != PHASE_TUNE or run.cell.label in self._repeats_asked:
            return
        if not resumed and (run.stopped or run.in_flight or not run.tuning_done):
            return
        self._repeats_asked.add(run.cell.label)
        opened = self.settings.open_repeats(run)
        if isinstance(opened, str):
            self.console.stopped(run, f"no repeats: {opened}")
            return
        self.repeats[run.cell.label] = opened
        self._count(opened)
        self.runs.append(opened)
        if opened.waiting:
            self.console.say(f"[{run.cell.label}] tuning done: {opened.waiting} repeat(s) queued")

    def take_over(self, run: CellRun, frozen: FrozenTrial) -> None:
        """A trial an earlier driver left running: followed if its launcher still knows the job,
        else recorded interrupted (its job died with that driver) and queued again."""
        trial = running_trial(run.study, frozen)
        ticket = Ticket(run, trial, frozen.user_attrs.get(ATTR_JOB_NUM, -1), time.monotonic())
        key = next(self._ids)
        if self.dispatcher.reattach(frozen.user_attrs.get(ATTR_LAUNCHER_JOB), key):
            self.flying[key] = ticket
            run.in_flight += 1
            # its elapsed time on the console counts from its start under the previous driver
            began = frozen.user_attrs.get(ATTR_STARTED)
            since = (
                time.monotonic() - max(0.0, time.time() - began) if isinstance(began, (int, float)) else ticket.started
            )
            self.console.trial_started(run, frozen.number, since)
            self.console.event(run, frozen.number, f"followed: its job #{ticket.job_num} outlived the previous driver")
        else:
            self._record_interrupted(
                run,
                trial,
                "was left running by a driver that died with it: recorded interrupted and queued again",
                "interrupted: its driver died",
            )

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self._interrupt(exc)
            raise

    def _run(self) -> None:
        while True:
            self.console.refresh()
            while len(self.flying) < self.settings.slots and (item := self._take_ready() or self._prepare()):
                self._submit(*item)
            if not self.flying:
                break
            if self.dispatcher.prepare_ahead and not self.ready and (item := self._prepare()):
                self.ready.append(item)
            for finished in self.dispatcher.wait(timeout=1.0):
                self._finish(finished)

    def _next_cell(self) -> CellRun | None:
        open_runs = [r for r in self.runs if r.wants_trials and self._affordable(r)]
        defer = self.settings.defer or (lambda run, runs: False)
        return min(open_runs, key=lambda r: (defer(r, self.runs), r.done + r.in_flight, r.cell.index), default=None)

    def _affordable(self, run: CellRun) -> bool:
        """The budget lets the cell start one more trial; a cell at its own cap with nothing in
        flight is done with it."""
        budget = self.settings.budget
        refusal = budget.refusal(run, list(self.flying.values()) + [t for t, _ in self.ready]) if budget else None
        if refusal and not refusal.sweep_wide and not run.in_flight:
            run.ended = refusal.reason
            self.console.say(f"[{run.label}] takes no more trials: {refusal.reason}")
            self.start_repeats(run)
        return refusal is None

    def _prepare(self) -> tuple[Ticket, Prepared] | None:
        run = self._next_cell()
        if run is None:
            return None
        if self.settings.warm_start and run.phase == PHASE_TUNE and not run.study.get_trials(deepcopy=False):
            if seeded := self.settings.warm_start(run):
                self.console.say(f"[{run.label}] warm start: {seeded} configuration(s) of other cells tried first")
        trial = run.study.ask(run.cell.distributions if run.distributions is None else run.distributions)
        if self.settings.configure is not None and run.phase == PHASE_TUNE:
            # hydra.sweeper.custom_search_space: more params, suggested on the trial itself (a
            # repeat's params are all fixed already, those included)
            self.settings.configure(run.cell.config, trial)
        job_num = self.next_job_num
        self.next_job_num += 1
        trial.set_user_attr(ATTR_JOB_NUM, job_num)
        key = self.settings.trial_key
        extra = {
            f"{key}.cell": run.cell.label,
            f"{key}.study": run.study.study_name,
            f"{key}.phase": run.phase,
            f"{key}.storage": self.settings.storage_location,
            f"{key}.id": trial_id(trial),
            f"{key}.number": trial.number,
        }
        if self.settings.folds and run.phase == PHASE_TUNE:  # k-fold tuning; a repeat trains on all of it
            extra[f"{key}.folds"] = self.settings.folds
        values = dict(trial.params)
        if run.phase == PHASE_REPEAT:
            run.waiting -= 1
            values[self.settings.seed_key] = trial.user_attrs[ATTR_SEED]
        try:
            extra.update(self.observers.trial_prepared(cell=run.cell, trial=trial, phase=run.phase))
        except SweepError:  # an observer says no trial may start: this one never ran
            self._record_interrupted(
                run, trial, "", "never launched: the sweep stopped", requeue=run.phase == PHASE_REPEAT
            )
            raise
        overrides = trial_overrides(run.cell, self.settings.common_overrides, values, extra)
        run.in_flight += 1
        return Ticket(run, trial, job_num, 0.0, values), self.dispatcher.prepare(overrides, job_num)

    def _take_ready(self) -> tuple[Ticket, Prepared] | None:
        while self.ready:
            ticket, prepared = self.ready.popleft()
            if not (ticket.run.stopped or ticket.run.ended):
                return ticket, prepared
            # Its cell stopped (or converged, or reached its cap) while it waited: it never ran, so it
            # is not a failure of the cell.
            ticket.run.in_flight -= 1
            # A repeat's seed is queued again, though: it must still run on a resume.
            self._record_interrupted(
                ticket.run,
                ticket.trial,
                "",
                "never launched: the cell takes no more trials",
                requeue=ticket.run.phase == PHASE_REPEAT,
            )
            self.start_repeats(ticket.run)  # it may have been all that kept a converged cell from them
        return None

    def _submit(self, ticket: Ticket, prepared: Prepared) -> None:
        key = next(self._ids)
        ticket.grant = self.dispatcher.grant(prepared)
        ticket.started = time.monotonic()
        ticket.run.started = ticket.run.started or ticket.started
        ticket.trial.set_user_attr(ATTR_STARTED, round(time.time(), 3))
        self.flying[key] = ticket
        self.console.event(ticket.run, ticket.trial.number, f"started (job #{ticket.job_num})", params=ticket.values)
        self.console.trial_started(ticket.run, ticket.trial.number, ticket.started)
        try:
            job_ref = self.dispatcher.submit(prepared, key)
        except LaunchError as exc:
            # Refused at submission (e.g. sbatch rejects the resource request): every trial would
            # be, so record this one as failed and stop the sweep with the launcher's words.
            self.flying.pop(key)
            self._record(ticket, None, exc)
            raise
        if job_ref is not None:
            ticket.trial.set_user_attr(ATTR_LAUNCHER_JOB, job_ref)

    def _finish(self, finished: Finished) -> None:
        ticket = self.flying.pop(finished.ticket)
        self._record(ticket, finished.job_return, finished.launcher_error, finished)
        if isinstance(finished.launcher_error, LaunchError):
            raise finished.launcher_error  # e.g. a SLURM job that can never start: so would the next

    def _record(
        self,
        ticket: Ticket,
        ret: JobReturn | None,
        launcher_error: BaseException | None,
        finished: Finished | None = None,
    ) -> None:
        from optuna.trial import TrialState

        run, trial = ticket.run, ticket.trial
        self.console.trial_ended(run, trial.number)
        run.in_flight -= 1
        duration = round(time.monotonic() - ticket.started, 3)
        run.durations.append(duration)
        trial.set_user_attr(ATTR_DURATION, duration)
        self._account(
            ticket,
            finished.cost if finished else None,
            finished.elapsed_s if finished and finished.elapsed_s is not None else duration,
        )
        trial.set_user_attr(ATTR_FINISHED, round(time.time(), 3))
        if ret is not None and ret.hydra_cfg is not None:
            trial.set_user_attr(ATTR_JOB_DIR, str(ret.hydra_cfg.hydra.runtime.output_dir))

        result = judge(ret, launcher_error, len(directions(run.cell.direction)))
        state, value, error = result.state, result.value, result.error
        if result.outputs:
            trial.set_user_attr(ATTR_OUTPUTS, mask_data(result.outputs))  # the journal is written masked
        if error:
            trial.set_user_attr(ATTR_ERROR, error[-2000:])
        frozen = run.study.tell(trial, value, state=state)

        if state == TrialState.COMPLETE:
            run.complete += 1
        elif state == TrialState.PRUNED:
            run.pruned += 1
        else:
            run.failed += 1
        self.console.finished(run, frozen, error)
        if result.abort:
            self._stop(
                run,
                f"trial {trial.number} raised an error that every trial of this cell would repeat: {last_line(error)}",
            )
        self._check_failures(run)
        self._check_converged(run)
        self.observers.trial_end(
            cell=run.cell, trial=frozen, job_return=ret, error=error, interrupted=False, phase=run.phase
        )
        if is_multi(run.cell.direction) and state == TrialState.COMPLETE:
            self.observers.front_update(cell=run.cell, front=front(run.study))
        if run.phase == PHASE_REPEAT:
            from ._repeats import summary

            self.observers.repeats_update(cell=run.cell, summary=summary(run.study))
        self.start_repeats(run)
        self.on_change()

    def _interrupt(self, reason: BaseException) -> None:
        """Stop every job in flight and record its trial as interrupted (re-queued for a resume)."""
        try:
            self.dispatcher.cancel()
        except Exception:
            log.exception("could not cancel the jobs in flight")
        flying = list(self.flying.values())
        tickets = flying + [ticket for ticket, _ in self.ready]
        self.flying.clear()
        self.ready.clear()
        for ticket in tickets:
            try:
                if ticket in flying:  # what it held until it was stopped
                    self._account(ticket, None, time.monotonic() - ticket.started)
                self._record_interrupted(
                    ticket.run, ticket.trial, "interrupted", f"interrupted: {type(reason).__name__} {reason}".strip()
                )
            except Exception:
                log.exception("could not record trial %d as interrupted", ticket.trial.number)
        if tickets:
            self.on_change()

    def _record_interrupted(
        self, run: CellRun, trial: Trial | FrozenTrial, event: str, error: str, requeue: bool = True
    ) -> None:
        """The one way a trial is recorded interrupted: in its study (re-queued unless it never
        ran), on the console, and for the observers (MLflow closes its run as KILLED)."""
        self.console.trial_ended(run, trial.number)
        frozen = mark_interrupted(run.study, trial, requeue=requeue)
        if requeue and run.phase == PHASE_REPEAT:
            run.waiting += 1
        if event:
            self.console.event(run, frozen.number, event)
        self.observers.trial_end(
            cell=run.cell, trial=frozen, job_return=None, error=error, interrupted=True, phase=run.phase
        )

    def _account(self, ticket: Ticket, cost: Cost | None, elapsed_s: float) -> None:
        """Record what the trial cost (the launcher's accounting, else its grant x elapsed) and
        charge it to the budget."""
        grant = ticket.grant or Grant()
        cost = cost or grant.for_seconds(elapsed_s)
        record_cost(ticket.trial, ticket.grant, cost)
        if self.settings.budget is not None:
            self.settings.budget.add(
                ticket.run.cell.label,
                cost,
                ticket.grant.gpus if ticket.grant else None,
                tuning=ticket.run.phase == PHASE_TUNE,
            )

    def _check_converged(self, run: CellRun) -> None:
        if run.phase == PHASE_TUNE and not run.ended and not run.stopped and run.done < run.target:
            if reason := converged(run.study, self.settings.patience, self.settings.min_delta):
                run.ended = reason
                self.console.say(f"[{run.label}] takes no more trials: {reason}")

    def _check_failures(self, run: CellRun) -> None:
        if run.failed > self.settings.max_failure_rate * run.target:
            what = "n_trials" if run.phase == PHASE_TUNE else "repeats"
            self._stop(
                run,
                f"{run.failed} failed trials exceed max_failure_rate={self.settings.max_failure_rate} "
                f"x {what}={run.target}",
            )

    def _stop(self, run: CellRun, reason: str) -> None:
        if not run.stopped:
            run.stopped = reason
            self.console.stopped(run, reason)
