"""The bench sweeper: plan the cells, check them, then run the dispatch loop.

    arguments -> cells (cells.py) -> one study per cell (studies.py)
              -> DispatchLoop over a Dispatcher for the configured launcher (loop.py, dispatch.py)
              -> results.csv / best.csv in the sweep dir (results.py)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from ._cells import Cell, describe_cell, enumerate_cells, split_arguments
from ._results import format_table, format_value, write_best, write_results
from .errors import CellsStoppedError, SweepConfigError
from .observer import Observers

log = logging.getLogger(__name__)


class BenchSweeperImpl:
    def __init__(
        self, sampler: Any, direction: Any, storage: str | None, study_name: str | None, n_trials: int, n_jobs: int,
        max_failure_rate: float, params: Any, pruner: Any = None, search_space_key: str | None = "search_space",
        metric_key: str | None = "task.metric", direction_key: str | None = "task.direction", trial_key: str = "trial",
        cell_check: str | None = None, dry_run: bool = False, poll_interval: float = 0.2, check_resources: bool = True,
    ) -> None:
        # Checked in sweep(), not here: Hydra would wrap an error raised while instantiating.
        self.direction = direction
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = OmegaConf.to_container(params, resolve=False) if OmegaConf.is_config(params) else (params or {})
        self.keys = {"search_space_key": search_space_key, "metric_key": metric_key, "direction_key": direction_key}
        self.trial_key, self.cell_check, self.dry_run, self.poll_interval = trial_key, cell_check, dry_run, poll_interval
        self.check_resources = check_resources

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- planning: everything here runs before any job is launched ------------------------------
    def _validate_settings(self) -> None:
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise SweepConfigError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate} must be within [0, 1]")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise SweepConfigError(f"hydra.sweeper.n_trials ({self.n_trials}) and n_jobs ({self.n_jobs}) must be >= 1")
        self.default_direction = _direction_name(self.direction)

    def plan(self, arguments: list[str]) -> tuple[list[Cell], list[str]]:
        self._validate_settings()
        loader = self.hydra_context.config_loader
        split = split_arguments(arguments, loader)
        cells = enumerate_cells(split)
        check = get_method(self.cell_check) if self.cell_check else None
        for cell in cells:
            cell_cfg = loader.load_sweep_config(self.config, split.common + cell.overrides)
            describe_cell(cell, cell_cfg, split, self.params, default_direction=self.default_direction, **self.keys)
            if check is not None:
                check(cell_cfg)
        return cells, split.common

    def describe_plan(self, cells: list[Cell]) -> str:
        lines = [f"{len(cells)} cell(s) x {self.n_trials} trials = {len(cells) * self.n_trials} trials, "
                 f"n_jobs={self.n_jobs}, launcher={type(self.launcher).__name__}, "
                 f"pruner={(self.pruner_cfg or {}).get('_target_', 'none')}"]
        for cell in cells:
            lines.append(f"\ncell {cell.label}: {cell.direction} {cell.metric or 'the job return value'}")
            for key, text in cell.params.items():
                kind = type(cell.distributions[key]).__name__ if key in cell.distributions else "fixed"
                lines.append(f"  {key}: {text}  [{kind}]")
        return "\n".join(lines)

    # -- running --------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[dict[str, Any]]:
        cells, common = self.plan(arguments)
        if self.dry_run:
            print(f"Dry run: nothing launched.\n{self.describe_plan(cells)}")
            return []
        log.info("bench sweep: %s", self.describe_plan(cells))

        from ._dispatch import make_dispatcher
        from ._loop import CellRun, DispatchLoop, LoopSettings
        from ._studies import max_job_num, open_storage, open_study, recover_interrupted, storage_location, study_name_for

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        _save_multirun_config(sweep_dir, self.config)
        location = storage_location(self.storage, str(sweep_dir))
        resumed = os.path.exists(location) if "://" not in location else False
        storage = open_storage(location)
        runs = []
        for cell in cells:
            cell.study_name = study_name_for(self.study_name, cell)
            study = open_study(cell, cell.study_name, storage, self.sampler_cfg, self.pruner_cfg)
            resumed = resumed or len(study.trials) > 0
            if recovered := recover_interrupted(study):
                log.warning("[%s] %d trial(s) left running by an earlier driver: marked failed and re-queued",
                            cell.label, recovered)
            runs.append(CellRun(cell, study))

        dispatcher = make_dispatcher(self.launcher, self.poll_interval, self.check_resources)
        slots = min(self.n_jobs, dispatcher.max_slots or self.n_jobs)
        if slots < self.n_jobs:
            log.warning("launcher %s runs one trial at a time in this process; n_jobs=%d is capped to %d "
                        "(use launcher=ray or launcher=slurm for parallel trials)",
                        type(self.launcher).__name__, self.n_jobs, slots)
        pairs = [(run.cell, run.study) for run in runs]
        settings = LoopSettings(self.n_trials, slots, self.max_failure_rate, common, location, self.trial_key)
        first_job = max(max_job_num([r.study for r in runs]), _max_numbered_subdir(sweep_dir)) + 1
        observers = Observers(self.hydra_context.callbacks)
        observers.sweep_start(config=self.config, sweep_dir=str(sweep_dir), cells=cells, storage=location, resumed=resumed)
        loop = DispatchLoop(runs, dispatcher, settings, first_job, observers=observers,
                            on_change=lambda: write_results(str(sweep_dir), pairs))
        error: BaseException | None = None
        try:
            loop.run()
        except BaseException as exc:  # KeyboardInterrupt too: observers must close what they opened
            error = exc
            raise
        finally:
            dispatcher.close()
            write_results(str(sweep_dir), pairs)
            best_rows = write_best(str(sweep_dir), pairs)
            stopped = [run for run in runs if run.stopped]
            if error is None and stopped:
                error = CellsStoppedError(
                    "cells stopped before their budget: "
                    + "; ".join(f"{run.cell.label} ({run.stopped})" for run in stopped)
                    + f". The other cells finished; see {sweep_dir / 'results.csv'}"
                )
            observers.sweep_end(config=self.config, sweep_dir=str(sweep_dir), error=error,
                                stopped_cells=[run.cell.label for run in stopped])
        self._print_best(best_rows, cells, sweep_dir)
        if error is not None:
            raise error
        return best_rows

    @staticmethod
    def _print_best(rows: list[dict[str, Any]], cells: list[Cell], sweep_dir: Path) -> None:
        searched = [key for cell in cells for key in cell.distributions]
        table = format_table(
            ["cell", "metric", "direction", "best", "trial", "params"],
            [[r["cell"], r["metric"], r["direction"], r["best_value"], r["best_trial"],
              " ".join(f"{k}={format_value(r[k])}" for k in dict.fromkeys(searched) if k in r)] for r in rows],
        )
        print(f"\nBest per cell (also in {sweep_dir / 'best.csv'}):\n{table}\n")


def _direction_name(direction: Any) -> str:
    name = getattr(direction, "name", direction)
    if isinstance(name, str) and name in ("minimize", "maximize"):
        return name
    raise SweepConfigError(f"hydra.sweeper.direction={direction!r}: use minimize or maximize "
                     "(multi-objective studies are not supported by the bench sweeper)")


def _save_multirun_config(sweep_dir: Path, config: DictConfig) -> None:
    # A resumed sweep keeps the original multirun.yaml and adds its own next to it.
    path = sweep_dir / "multirun.yaml"
    n = 1
    while path.exists():
        path = sweep_dir / f"multirun.resume{n}.yaml"
        n += 1
    OmegaConf.save(config, path)


def _max_numbered_subdir(sweep_dir: Path) -> int:
    return max((int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), default=-1)
