"""The bench sweeper: plan and check the cells, then run them under the sweep's driver lock.

arguments -> plan (_plan.py: every check, nothing created) -> lock the sweep dir (_sweepdir.py)
          -> one study per cell, checked against what it held before (_studies.py)
          -> trials an earlier driver left running: followed, or recorded interrupted
          -> DispatchLoop over a Dispatcher for the configured launcher (_loop.py; _dispatch.py, _ray.py, _slurm.py),
             which queues each cell's seed repeats as soon as its tuning is done (_repeats.py)
          -> results.csv / best.csv / repeats.csv for every cell of the sweep dir (_results.py)
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from . import _masking
from ._errors import CellsStoppedError, SweepInterrupted
from ._observer import Observers
from ._plan import SweepPlan, describe_plan, make_plan, problems_error
from ._results import format_value
from .config import AccountingConf, BenchSweeperConf, BudgetConf

if TYPE_CHECKING:
    import optuna

    from ._budget import Budget
    from ._loop_state import CellRun
    from ._sweepdir import SweepDir

log = logging.getLogger(__name__)


class BenchSweeperImpl:
    def __init__(self, **settings: Any) -> None:
        # Checked in sweep(), not here: Hydra would wrap an error raised while instantiating.
        self.settings = BenchSweeperConf(**settings)
        # Nested settings as configs with every default, whether given as config, dict or not at all.
        # Resolved first, while still part of the whole config: they may interpolate app keys.
        for key, node in (("budget", BudgetConf), ("accounting", AccountingConf)):
            given = getattr(self.settings, key) or {}
            given = OmegaConf.to_container(given, resolve=True) if isinstance(given, DictConfig) else given
            setattr(self.settings, key, OmegaConf.merge(OmegaConf.structured(node), given))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[dict[str, Any]]:
        _masking.install(self.config)
        _quiet_libraries()
        from ._dispatch import forwarded_env

        forwarded_env(self.settings.forward_env)  # a bad name is refused before anything is created
        plan = make_plan(self.settings, self.config, self.hydra_context.config_loader, arguments, self.launcher)
        Observers(self.hydra_context.callbacks).sweep_plan(config=self.config)  # a tracker's own checks
        if self.settings.dry_run:
            print(f"Dry run: nothing launched.\n{describe_plan(plan, self.settings, self.launcher)}")
        if plan.problems:
            raise problems_error(plan)
        if self.settings.dry_run:
            return []
        log.info("bench sweep: %s", describe_plan(plan, self.settings, self.launcher))
        from ._sweepdir import SweepDir

        with (
            SweepDir(plan.sweep_dir, plan.axes, plan.label_keys, self.settings.latest_link) as sweep_dir,
            _signals_as_exceptions() as signals,
        ):
            return self._run(plan, sweep_dir, signals)

    def _run(self, plan: SweepPlan, sweep_dir: SweepDir, signals: list[int]) -> list[dict[str, Any]]:
        from ._console import Console
        from ._dispatch import forwarded_env, make_dispatcher
        from ._fingerprint import fingerprint
        from ._integrity import check_tables_match
        from ._loop import DispatchLoop
        from ._loop_state import CellRun, LoopSettings
        from ._repeats import existing_repeats, repeat_records
        from ._results import Throttled, write_best, write_repeats, write_results
        from ._studies import (
            StudyRecord,
            check_resume,
            max_job_num,
            open_cell_study,
            open_storage,
            running_trials,
            sweep_studies,
        )
        from ._warm import WarmStart

        s, cells = self.settings, plan.cells
        storage = open_storage(plan.storage)
        records = sweep_studies(storage, sweep_dir.sweep_id)
        check_tables_match(
            plan.sweep_dir,
            set(records) | {r.name for r in repeat_records(storage, sweep_dir.sweep_id)},
            sweep_dir.sweep_id,
        )  # before anything is written: the tables are this storage's
        fingerprints = {
            c.label: fingerprint(
                c, c.config, s.sampler, list(s.ignore_on_resume), s.trial_key, s.search_space_key, s.folds
            )
            for c in cells
        }
        check_resume(cells, fingerprints, records, s.on_change)
        _save_multirun_config(plan.sweep_dir, self.config)
        runs = [
            CellRun(
                c,
                open_cell_study(
                    c, fingerprints[c.label], records, storage, sweep_dir.sweep_id, s.study_name, s.sampler, s.pruner
                ),
                target=plan.tuning_trials(c),
                count_pruned=s.count_pruned or c.label in plan.grid_sizes,
            )
            for c in cells
        ]  # a grid never redraws a point
        dispatcher = make_dispatcher(
            self.launcher, s.poll_interval, s.check_resources, s.accounting, forwarded_env(s.forward_env)
        )
        slots = min(s.n_jobs, dispatcher.max_slots or s.n_jobs)
        if slots < s.n_jobs:
            log.warning(
                "launcher %s runs one trial at a time in this process; n_jobs=%d is capped to %d "
                "(use launcher=ray or launcher=slurm for parallel trials)",
                type(self.launcher).__name__,
                s.n_jobs,
                slots,
            )
        every = list(records.values())

        known: dict[str, StudyRecord] = {}  # kept, so each repeats study is loaded once

        def repeated() -> list[StudyRecord]:  # grows as cells finish tuning
            for record in repeat_records(storage, sweep_dir.sweep_id):
                known.setdefault(record.name, record)
            return list(known.values())

        first_job = (
            max(max_job_num([r.load(storage) for r in every + repeated()]), _max_numbered_subdir(plan.sweep_dir)) + 1
        )
        observers = Observers(self.hydra_context.callbacks)
        observers.sweep_start(
            config=self.config,
            sweep_dir=str(plan.sweep_dir),
            cells=cells,
            storage=plan.storage,
            resumed=sweep_dir.resumed,
            trials_in_driver=dispatcher.runs_in_driver,
        )
        console = Console(runs, slots, plain_every_s=s.progress_every_s)
        budget = _budget(s.budget, [r.load(storage) for r in every + repeated()], runs, len(plan.seeds))
        warm = WarmStart(s.warm_start, s.warm_start_top_k, s.sibling_key, storage, s.sampler) if s.warm_start else None
        settings = LoopSettings(
            slots,
            s.max_failure_rate,
            plan.common,
            plan.storage,
            s.trial_key,
            s.seed_key,
            open_repeats=plan.repeats_opener(storage) if plan.seeds else None,
            budget=budget,
            patience=s.budget.patience,
            min_delta=s.budget.min_delta,
            warm_start=warm.seed if warm else None,
            defer=warm.defer if warm else None,
            configure=plan.configure,
            folds=s.folds,
        )
        if warm:
            warm.runs = runs  # the loop's own list, which repeats join
        budget.runs = runs  # the same list: the repeats still owed

        def write_tables() -> None:
            write_results(str(plan.sweep_dir), every, storage)
            write_repeats(str(plan.sweep_dir), repeated(), storage)

        # After a trial's end the tables are rewritten only once the last rewrite has paid for
        # itself (Throttled): a full rewrite per trial made the driver's per-trial cost grow with
        # the sweep. The journal holds every trial at once; the tables catch up at the sweep's end.
        loop = DispatchLoop(
            runs,
            dispatcher,
            settings,
            first_job,
            observers=observers,
            console=console,
            on_change=Throttled(write_tables),
        )
        error: BaseException | None = None
        try:
            for run in list(runs):  # trials an earlier driver left running; repeats it had started
                for frozen in running_trials(run.study):
                    loop.take_over(run, frozen)
                loop.start_repeats(run, resumed=existing_repeats(storage, run.study.study_name) is not None)
            for run in loop.repeats.values():
                for frozen in running_trials(run.study):
                    loop.take_over(run, frozen)
            if sweep_dir.resumed:
                console.say(_resume_line(plan, runs))
            with console:
                loop.run()
        except BaseException as exc:  # KeyboardInterrupt too: observers must close what they opened
            # Lightning answers a Ctrl-C inside an in-process trial with sys.exit(1): still a Ctrl-C.
            error = KeyboardInterrupt() if isinstance(exc, SystemExit) and signals else exc
            if error is not exc:
                raise error from exc
            raise
        finally:
            dispatcher.close()
            write_tables()
            best = write_best(str(plan.sweep_dir), every, storage, repeated())
            stopped = [run for run in runs if run.stopped]
            if error is None and stopped:
                error = CellsStoppedError(
                    "cells stopped before their budget: "
                    + "; ".join(f"{run.label} ({run.stopped})" for run in stopped)
                    + f". The other cells finished; see {plan.sweep_dir / 'results.csv'}"
                )
            observers.sweep_end(
                config=self.config,
                sweep_dir=str(plan.sweep_dir),
                error=error,
                stopped_cells=[run.cell.label for run in stopped],
            )
            if error is not None and not isinstance(error, Exception):
                log.error(
                    "sweep interrupted (%s); rerun the same command with hydra.sweep.dir=%s to resume it",
                    type(error).__name__,
                    plan.sweep_dir,
                )
        # the searched params, and those a custom_search_space suggested
        searched = {key for run in runs for trial in run.study.get_trials(deepcopy=False) for key in trial.params}
        _print_best(best, searched | {key for cell in cells for key in cell.distributions}, plan.sweep_dir)
        _print_left_short(budget, loop.runs, plan.sweep_dir)
        if error is not None:
            raise error
        return best


def _resume_line(plan: SweepPlan, runs: list[CellRun]) -> str:
    """ "resuming <dir>: 3/8 done, 1 interrupted trial re-queued": what an earlier run of the sweep
    finished (tuning trials and repeats, of the sweep's whole target) and how many of its trials,
    stopped or left running by a driver that died, are queued to run again."""
    from optuna.trial import TrialState

    from ._studies import ATTR_REQUEUED_FROM, PHASE_TUNE

    tuning = [run for run in runs if run.phase == PHASE_TUNE]
    target = sum(run.target for run in tuning) + len(plan.seeds) * len(tuning)
    requeued = sum(
        1
        for run in runs
        for trial in run.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if ATTR_REQUEUED_FROM in trial.user_attrs
    )
    done = sum(run.done for run in runs)
    return (
        f"resuming {plan.sweep_dir}: {done}/{target} done, "
        f"{requeued} interrupted trial{'' if requeued == 1 else 's'} re-queued"
    )


def _budget(conf: Any, studies: list[optuna.Study], runs: list[CellRun], seeds: int) -> Budget:
    """The sweep's budget, charged with what every study of the sweep dir has spent already."""
    from ._budget import Budget, spent_by_cell
    from ._studies import PHASE_TUNE, STUDY_CELL, STUDY_PHASE

    spent, by_cell = spent_by_cell(
        studies,
        lambda study: (
            study.user_attrs.get(STUDY_CELL, study.study_name),
            study.user_attrs.get(STUDY_PHASE, PHASE_TUNE),
        ),
    )
    budget = Budget(conf, spent, by_cell, seeds)
    for run in runs:
        budget.learn(run.cell.label, run.study.get_trials(deepcopy=False))
    return budget


def _print_left_short(budget: Budget, runs: list[CellRun], sweep_dir: Path) -> None:
    """A budget reached is a planned end: say where, and which cells still want trials."""
    short = [f"{run.label} ({run.done}/{run.target})" for run in runs if run.wants_trials]
    if budget.reached is None or not short:
        return
    print(
        f"Budget reached, no new trials were started: {budget.reached.reason}.\n"
        f"Cells left short: {', '.join(short)}.\n"
        f"Resume with a larger budget: the same command with hydra.sweep.dir={sweep_dir} and a larger "
        "hydra.sweeper.budget.gpu_hours / cpu_hours.\n"
    )


def _print_best(rows: list[dict[str, Any]], searched: set[str], sweep_dir: Path) -> None:
    repeats = ["test mean", "test std", "seeds"] if any("n_repeats" in r for r in rows) else []
    from ._console import table_text

    table = table_text(
        ["cell", "metric", "direction", "best", "worst", "trial", *repeats, "params"],
        [
            [
                r["cell"],
                r["metric"],
                r["direction"],
                _best_text(r),
                r.get("worst_value", ""),
                r["best_trial"],
                *([r.get("test_mean", "-"), r.get("test_std", "-"), r.get("n_repeats", 0)] if repeats else []),
                " ".join(f"{k}={format_value(v)}" for k, v in r.items() if k in searched),
            ]
            for r in rows
        ],
    )
    print(f"\nBest per cell (also in {sweep_dir / 'best.csv'}):\n{table}\n")


def _best_text(row: dict[str, Any]) -> Any:
    """The best value, or a front trial's values (value_0, value_1, ...)."""
    objectives = len(str(row["direction"]).split(","))
    if objectives == 1:
        return row["best_value"]
    return "(" + ", ".join(format_value(row.get(f"value_{i}", "")) for i in range(objectives)) + ")"


def _quiet_libraries() -> None:
    """The driver's console is for trial events: Optuna's own line per study created or loaded
    says nothing the sweeper does not."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[list[int]]:
    """Ctrl-C raises KeyboardInterrupt as usual, and SIGTERM SweepInterrupted, so a terminated driver
    stops its jobs and closes its runs as a Ctrl-C'd one does; the list yielded records the signals
    received. Handlers are restored afterwards (Lightning leaves SIGINT ignored after a Ctrl-C)."""
    received: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SweepInterrupted(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, interrupt)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _save_multirun_config(sweep_dir: Path, config: DictConfig) -> None:
    # A resumed sweep keeps the original multirun.yaml and adds its own next to it. Masked: the
    # overrides and config may hold secrets.
    path = sweep_dir / "multirun.yaml"
    n = 1
    while path.exists():
        path = sweep_dir / f"multirun.resume{n}.yaml"
        n += 1
    OmegaConf.save(OmegaConf.create(_masking.mask_config(config, resolve=False)), path)


def _max_numbered_subdir(sweep_dir: Path) -> int:
    return max((int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), default=-1)
