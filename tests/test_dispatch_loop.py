"""The dispatch loop (_loop.DispatchLoop) in-process, over a scripted Dispatcher and real Optuna studies
in memory: no Hydra app, no launcher, no training. Each test scripts what its trials return and in
which order they finish, and asserts what the loop did with them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hydra_plugins.bench_sweeper._budget import Budget
from hydra_plugins.bench_sweeper._cells import Cell
from hydra_plugins.bench_sweeper._console import Console
from hydra_plugins.bench_sweeper._cost import Cost, Grant
from hydra_plugins.bench_sweeper._dispatch import Dispatcher, Finished, Prepared
from hydra_plugins.bench_sweeper._errors import CellError, LaunchError
from hydra_plugins.bench_sweeper._loop import DispatchLoop
from hydra_plugins.bench_sweeper._loop_state import CellRun, LoopSettings
from hydra_plugins.bench_sweeper._observer import Observers
from hydra_plugins.bench_sweeper._repeats import TEST_VALUE, opener
from hydra_plugins.bench_sweeper._studies import ATTR_INTERRUPTED, ATTR_SEED, counts
from hydra_plugins.bench_sweeper._warm import ATTR_WARM_START_FROM, SIBLINGS, WarmStart

optuna.logging.set_verbosity(optuna.logging.WARNING)
TRIAL_KEY = "trial"


@dataclass
class Job:
    """A trial as the scripted launcher sees it: the keys of its command line."""

    ticket: int
    cell: str  # its model: the one axis of these cells
    phase: str
    number: int
    x: float | None
    seed: int | None


class ScriptedDispatcher(Dispatcher):
    """Holds each submitted trial until `pick` chooses it to finish, with what `outcome` says:
    a number (or a mapping with "value"), an exception the job raised, or ("launcher", exc) for a
    launcher that lost the job. Records every submission and the trials running at every wait()."""

    def __init__(
        self,
        outcome: Callable[[Job], Any],
        pick: Callable[[list[Job]], list[Job]] = lambda running: running[-1:],  # newest first
        cost: Cost | None = None,
        interrupt_after: int | None = None,  # raise KeyboardInterrupt at the wait() after this many finished
    ) -> None:
        self.outcome, self.pick, self.cost, self.interrupt_after = outcome, pick, cost, interrupt_after
        self.running: list[Job] = []
        self.submitted: list[Job] = []
        self.running_at_wait: list[int] = []
        self.finished = 0
        self.cancelled: list[Job] = []

    def grant(self, prepared: Prepared) -> Grant:
        return Grant(gpus=1.0)

    def submit(self, prepared: Prepared, ticket: int) -> None:
        keys = dict(line.removeprefix("++").split("=", 1) for line in prepared.overrides if "=" in line)
        job = Job(
            ticket,
            keys["model"],
            keys[f"{TRIAL_KEY}.phase"],
            int(keys[f"{TRIAL_KEY}.number"]),
            float(keys["x"]) if "x" in keys else None,
            int(keys["seed"]) if "seed" in keys else None,
        )
        self.running.append(job)
        self.submitted.append(job)

    def wait(self, timeout: float) -> list[Finished]:
        self.running_at_wait.append(len(self.running))
        if self.interrupt_after is not None and self.finished >= self.interrupt_after:
            raise KeyboardInterrupt
        out = []
        for job in self.pick(list(self.running)):
            self.running.remove(job)
            self.finished += 1
            out.append(self._finished(job, self.outcome(job)))
        return out

    def _finished(self, job: Job, result: Any) -> Finished:
        if isinstance(result, tuple) and result[0] == "launcher":
            return Finished(job.ticket, None, result[1], cost=self.cost)
        ret = JobReturn()
        ret.status = JobStatus.FAILED if isinstance(result, BaseException) else JobStatus.COMPLETED
        ret._return_value = result
        return Finished(job.ticket, ret, elapsed_s=1.0, cost=self.cost)

    def cancel(self) -> None:
        self.cancelled += self.running
        self.running = []


def make_cell(index: int, model: str, task: str = "t") -> Cell:
    label = f"task={task},model={model}"
    return Cell(
        index,
        [f"task={task}", f"model={model}"],
        label,
        {"task": task, "model": model},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        study_name=label,
    )


def make_runs(storage: Any, models: list[str], target: int = 3, first: int = 0, **kwargs: Any) -> list[CellRun]:
    """One tuning run per model, each with its own study; `first`: the first cell's index."""
    runs = []
    for i, model in enumerate(models, start=first):
        cell = make_cell(i, model)
        study = optuna.create_study(study_name=cell.label, storage=storage, sampler=optuna.samplers.RandomSampler(i))
        runs.append(CellRun(cell, study, target=target, **kwargs))
    return runs


def make_loop(runs: list[CellRun], dispatcher: Dispatcher, slots: int = 2, **settings: Any) -> DispatchLoop:
    loop_settings = LoopSettings(
        slots=slots,
        max_failure_rate=settings.pop("max_failure_rate", 1.0),
        common_overrides=[],
        storage_location="memory",
        trial_key=TRIAL_KEY,
        seed_key="seed",
        **settings,
    )
    console = Console(runs, slots, live=False)
    return DispatchLoop(
        runs, dispatcher, loop_settings, 0, on_change=lambda: None, observers=Observers(None), console=console
    )


@pytest.fixture
def storage() -> optuna.storages.InMemoryStorage:
    return optuna.storages.InMemoryStorage()


def by_label(runs: list[CellRun], model: str, phase: str = "tune") -> CellRun:
    return next(r for r in runs if r.cell.coordinates["model"] == model and r.phase == phase)


def test_a_freed_slot_is_refilled_before_the_next_wait(storage):
    """No batch barrier: while trials remain, every wait() finds all slots busy, though trials
    finish one at a time, newest first (not in the order they started)."""
    runs = make_runs(storage, ["a", "b"], target=4)
    dispatcher = ScriptedDispatcher(lambda job: job.x)
    make_loop(runs, dispatcher, slots=3).run()

    assert dispatcher.running_at_wait == [3, 3, 3, 3, 3, 3, 2, 1]  # 8 trials: full until the queue runs dry
    assert [(r.complete, r.failed, r.in_flight) for r in runs] == [(4, 0, 0), (4, 0, 0)]
    assert all(counts(r.study)["complete"] == 4 for r in runs)


def test_the_least_advanced_cell_gets_the_next_slot(storage):
    """Cell a has two trials from an earlier run of the sweep: b and c catch up before a runs again,
    then the cells take turns."""
    runs = make_runs(storage, ["a", "b", "c"], target=3)
    for _ in range(2):
        runs[0].study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    dispatcher = ScriptedDispatcher(lambda job: job.x)
    make_loop(runs, dispatcher, slots=1).run()

    order = [job.cell for job in dispatcher.submitted]
    assert order == ["b", "c", "b", "c", "a", "b", "c"]
    assert [r.done for r in runs] == [3, 3, 3]


def test_failures_are_counted_and_too_many_stop_only_their_cell(storage):
    runs = make_runs(storage, ["a", "b"], target=4)
    outcome = lambda job: RuntimeError("out of memory") if job.cell == "a" else job.x  # noqa: E731
    dispatcher = ScriptedDispatcher(outcome)
    make_loop(runs, dispatcher, slots=1, max_failure_rate=0.5).run()

    a, b = runs
    assert a.failed == 3 and a.stopped and "max_failure_rate=0.5" in a.stopped  # 3 > 0.5 x 4
    assert counts(a.study)["failed"] == 3
    assert "out of memory" in a.study.trials[0].user_attrs["error"]
    assert (b.complete, b.stopped) == (4, None)


def test_a_cell_error_stops_its_cell_at_once(storage):
    runs = make_runs(storage, ["a", "b"], target=3)
    outcome = lambda job: CellError("dataset missing") if job.cell == "a" else job.x  # noqa: E731
    dispatcher = ScriptedDispatcher(outcome, pick=lambda running: running[:1])
    make_loop(runs, dispatcher, slots=2).run()

    a, b = runs
    assert a.failed == 1 and a.stopped and "dataset missing" in a.stopped
    assert len(a.study.trials) == 1  # no other trial of it was started
    assert b.complete == 3


def test_pruned_trials_count_towards_the_target_or_not(storage):
    runs = make_runs(storage, ["a"], target=3) + make_runs(storage, ["b"], target=3, first=1, count_pruned=False)
    outcome = lambda job: optuna.TrialPruned() if job.number == 0 else job.x  # noqa: E731
    make_loop(runs, ScriptedDispatcher(outcome), slots=1).run()

    a, b = runs
    assert (a.complete, a.pruned, a.failed) == (2, 1, 0)
    assert (b.complete, b.pruned, b.failed) == (3, 1, 0)  # its pruned trial was replaced
    assert [t.state for t in a.study.trials].count(TrialState.PRUNED) == 1


def test_a_lost_job_fails_its_trial_and_a_launch_error_ends_the_sweep(storage):
    runs = make_runs(storage, ["a"], target=3)
    lost = lambda job: ("launcher", RuntimeError("worker died")) if job.number == 0 else job.x  # noqa: E731
    make_loop(runs, ScriptedDispatcher(lost, pick=lambda r: r[:1]), slots=1).run()
    assert (runs[0].complete, runs[0].failed) == (3, 1)
    assert "worker died" in runs[0].study.trials[0].user_attrs["error"]

    runs = make_runs(optuna.storages.InMemoryStorage(), ["b"], target=3)
    refused = lambda job: ("launcher", LaunchError("the partition is gone"))  # noqa: E731
    with pytest.raises(LaunchError, match="partition is gone"):
        make_loop(runs, ScriptedDispatcher(refused), slots=1).run()
    assert len(runs[0].study.trials) == 1


def test_interrupted_trials_are_requeued_and_run_first_on_resume(storage):
    runs = make_runs(storage, ["a", "b"], target=3)
    dispatcher = ScriptedDispatcher(lambda job: job.x, interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        make_loop(runs, dispatcher, slots=2).run()

    assert len(dispatcher.cancelled) == 2  # the loop stopped what was still running
    stopped = {(job.cell, job.x) for job in dispatcher.cancelled}
    for run in runs:
        states = counts(run.study)
        assert states["failed"] == 0  # an interruption is not a failure of the cell
        interrupted = [t for t in run.study.trials if t.user_attrs.get(ATTR_INTERRUPTED)]
        assert states["waiting"] == len(interrupted)

    # a new driver over the same studies: the interrupted params run again, before new ones
    resumed = [CellRun(r.cell, r.study, target=3) for r in runs]
    again = ScriptedDispatcher(lambda job: job.x)
    make_loop(resumed, again, slots=2).run()
    assert {(job.cell, job.x) for job in again.submitted[:2]} == stopped
    assert [r.complete for r in resumed] == [3, 3]


def test_a_cell_budget_ends_that_cell_only(storage):
    runs = make_runs(storage, ["a", "b"], target=5)
    budget = Budget({"per_cell": 2.5}, Cost(0.0, 0.0), {})
    budget.runs = runs
    dispatcher = ScriptedDispatcher(lambda job: job.x, cost=Cost(1.0, 0.0, "sacct"))
    make_loop(runs, dispatcher, slots=1, budget=budget).run()

    for run in runs:  # 2 GPU-hours spent, 1 expected for the next: over 2.5
        assert run.complete == 2 and run.ended and "per_cell=2.5" in run.ended
    assert budget.reached is None  # a cell's cap is not the sweep's


def test_the_sweep_budget_stops_every_cell(storage):
    runs = make_runs(storage, ["a", "b"], target=5)
    budget = Budget({"gpu_hours": 3.0}, Cost(0.0, 0.0), {})
    budget.runs = runs
    dispatcher = ScriptedDispatcher(lambda job: job.x, cost=Cost(1.0, 0.0, "sacct"))
    make_loop(runs, dispatcher, slots=1, budget=budget).run()

    assert sum(r.complete for r in runs) == 3
    assert budget.reached is not None and "gpu_hours=3" in budget.reached.reason
    assert all(r.wants_trials for r in runs)  # left short, not ended: a larger budget resumes them


def test_repeats_start_as_soon_as_a_cell_is_tuned_while_others_still_tune(storage):
    runs = make_runs(storage, ["a"], target=1) + make_runs(storage, ["b"], target=4, first=1)
    outcome = lambda job: {"value": job.x or 0.0, TEST_VALUE: 0.5 + job.seed / 10} if job.seed else job.x  # noqa: E731
    dispatcher = ScriptedDispatcher(outcome, pick=lambda running: running[:1])  # oldest first
    loop = make_loop(runs, dispatcher, slots=2, open_repeats=opener([1, 2], storage))
    loop.run()

    phases = [(job.cell, job.phase) for job in dispatcher.submitted]
    first_repeat = phases.index(("a", "repeat"))
    last_b_tune = max(i for i, p in enumerate(phases) if p == ("b", "tune"))
    assert first_repeat < last_b_tune  # a's repeats ran while b still tuned

    a_repeats, b_repeats = loop.repeats["task=t,model=a"], loop.repeats["task=t,model=b"]
    assert [t.user_attrs[ATTR_SEED] for t in a_repeats.study.trials] == [1, 2]
    best_x = runs[0].study.best_trial.params["x"]
    assert {t.params["x"] for t in a_repeats.study.trials} == {best_x}  # the tuned best, once per seed
    assert (a_repeats.complete, b_repeats.complete) == (2, 2)


def test_a_sibling_waits_and_starts_from_the_others_best(storage):
    runs = make_runs(storage, ["a", "b"], target=3)
    warm = WarmStart(SIBLINGS, top_k=1, sibling_key="model", storage=storage)
    warm.runs = runs
    dispatcher = ScriptedDispatcher(lambda job: job.x, pick=lambda running: running[:1])
    make_loop(runs, dispatcher, slots=2, warm_start=warm.seed, defer=warm.defer).run()

    order = [job.cell for job in dispatcher.submitted]
    assert order[:3] == ["a", "a", "a"]  # b waited while its sibling tuned
    a, b = runs
    first_b = b.study.trials[0]
    assert first_b.user_attrs[ATTR_WARM_START_FROM] == f"{a.cell.label} #{a.study.best_trial.number}"
    assert first_b.params == a.study.best_trial.params
    assert b.complete == 3
