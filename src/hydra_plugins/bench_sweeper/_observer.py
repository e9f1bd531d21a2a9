"""What the bench sweeper tells Hydra callbacks that want to follow a sweep cell by cell.

Hydra's callbacks only see multirun start/end (in the driver, and the end is skipped when the
sweep raises) and job start/end (where the job runs). A tracker that mirrors the sweep's structure
needs more, in the driver: the cells, each trial before it is launched, each trial's outcome, and
an end that always comes. A Hydra callback that also subclasses SweepObserver gets these calls
(the base class does nothing; override what you need):

    on_sweep_plan(config) -> None
        while the sweep is planned, before anything is created or launched (the dry run included):
        raise a SweepError whose message says what would fail once the sweep started (bench's
        MLflow callback: a tracking server that does not answer, a half-migrated store).
    on_sweep_start(config, sweep_dir, cells, storage, resumed, trials_in_driver) -> None
        before the first trial; `cells` are _cells.Cell (label, coordinates, metric, direction,
        params, study_name, config = the cell's composed config); trials_in_driver: the launcher
        runs trials inside this process (Hydra's basic launcher), one at a time.
    on_trial_prepared(cell, trial, phase) -> dict[str, Any] | None
        an Optuna trial was asked for and is about to be launched; phase is "tune", or "repeat" for
        a seed repeat of the cell's best configuration (its seed: trial.user_attrs["seed"]). The returned {config.key: value}
        are added to the job's overrides (as ++key=value): the way to hand the job ids it needs.
        A tracker records its run id on the trial as the user attribute TRACKER_RUN_ID_ATTR, which
        results.csv shows.
    on_trial_end(cell, trial, job_return, error, interrupted, phase) -> None
        the trial was told to its study (trial is the FrozenTrial; job_return may be None);
        interrupted: its job was stopped with the driver, or never launched. What the trial cost is
        in trial.user_attrs under observer.COST_ATTRS (gpu_hours, cpu_hours).
    on_repeats_update(cell, summary) -> None
        a repeat of the cell finished; summary: n_repeats, test_mean, test_std, test_iqm over the
        cell's finished repeats so far (from the study, so a resumed sweep counts earlier ones).
    on_sweep_end(config, sweep_dir, error, stopped_cells) -> None
        always, in a `finally`; error is the exception that ends the sweep (CellsStoppedError when
        some cells stopped early), or None; stopped_cells are their labels.

Errors in on_sweep_plan and on_sweep_start propagate (nothing has been launched yet); errors in the per-trial hooks
and in on_sweep_end are logged and the sweep goes on, except a SweepError from on_trial_prepared:
that is the observer's sentence for why no trial may start (bench's MLflow server has stopped),
and it ends the sweep before the trial is launched. The module name starts with "_" so Hydra's
plugin scan never re-creates SweepObserver (isinstance must keep working); observer.py is its
public name.
"""

from __future__ import annotations

import logging
from typing import Any

from ._errors import SweepError
from ._private_apis import callbacks_of

log = logging.getLogger(__name__)

# The trial user attribute, and results.csv column, holding the tracker's run id for the trial.
TRACKER_RUN_ID_ATTR = "mlflow_run_id"


class SweepObserver:
    """Base class of the callbacks that follow a sweep; every hook is a no-op here."""

    def on_sweep_plan(self, config: Any) -> None:
        pass

    def on_sweep_start(
        self, config: Any, sweep_dir: str, cells: list[Any], storage: str, resumed: bool, trials_in_driver: bool
    ) -> None:
        pass

    def on_trial_prepared(self, cell: Any, trial: Any, phase: str = "tune") -> dict[str, Any] | None:
        return None

    def on_trial_end(
        self, cell: Any, trial: Any, job_return: Any, error: str | None, interrupted: bool, phase: str = "tune"
    ) -> None:
        pass

    def on_front_update(self, cell: Any, front: list[Any]) -> None:
        pass

    def on_repeats_update(self, cell: Any, summary: dict[str, float]) -> None:
        pass

    def on_sweep_end(self, config: Any, sweep_dir: str, error: BaseException | None, stopped_cells: list[str]) -> None:
        pass


class Observers:
    """The SweepObservers among a sweep's Hydra callbacks, called in their order."""

    def __init__(self, hydra_callbacks: Any) -> None:
        self.observers = [cb for cb in callbacks_of(hydra_callbacks) if isinstance(cb, SweepObserver)]

    def sweep_plan(self, **kwargs: Any) -> None:
        for obs in self.observers:
            obs.on_sweep_plan(**kwargs)

    def sweep_start(self, **kwargs: Any) -> None:
        for obs in self.observers:
            obs.on_sweep_start(**kwargs)

    def trial_prepared(self, **kwargs: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for obs in self.observers:
            extra.update(self._safely(obs.on_trial_prepared, stops_the_sweep=SweepError, **kwargs) or {})
        return extra

    def trial_end(self, **kwargs: Any) -> None:
        for obs in self.observers:
            self._safely(obs.on_trial_end, **kwargs)

    def front_update(self, **kwargs: Any) -> None:
        for obs in self.observers:
            self._safely(obs.on_front_update, **kwargs)

    def repeats_update(self, **kwargs: Any) -> None:
        for obs in self.observers:
            self._safely(obs.on_repeats_update, **kwargs)

    def sweep_end(self, **kwargs: Any) -> None:
        for obs in self.observers:
            self._safely(obs.on_sweep_end, **kwargs)

    @staticmethod
    def _safely(
        hook: Any, stops_the_sweep: type[BaseException] | tuple[type[BaseException], ...] = (), **kwargs: Any
    ) -> Any:
        try:
            return hook(**kwargs)
        except stops_the_sweep:
            raise
        except Exception:  # a tracker failing must not lose the sweep
            log.exception("sweep observer %s failed", hook.__qualname__)
            return None
