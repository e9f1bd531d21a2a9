"""What the bench sweeper tells Hydra callbacks that want to follow a sweep cell by cell.

Hydra's callbacks only see multirun start/end (in the driver, and the end is skipped when the
sweep raises) and job start/end (where the job runs). A tracker that mirrors the sweep's structure
needs more, in the driver: the cells, each trial before it is launched, each trial's outcome, and
an end that always comes. Any object in hydra.callbacks that has some of these methods gets them:

    on_sweep_start(config, sweep_dir, cells, storage, resumed, trials_in_driver) -> None
        before the first trial; `cells` are _cells.Cell (label, coordinates, metric, direction,
        params, study_name, config = the cell's composed config); trials_in_driver: the launcher
        runs trials inside this process (Hydra's basic launcher), one at a time.
    on_trial_prepared(cell, trial) -> dict[str, Any] | None
        an Optuna trial was asked for and is about to be launched. The returned {config.key: value}
        are added to the job's overrides (as ++key=value): the way to hand the job ids it needs.
        A tracker records its run id on the trial as the user attribute TRACKER_RUN_ID_ATTR, which
        results.csv shows.
    on_trial_end(cell, trial, job_return, error, interrupted) -> None
        the trial was told to its study (trial is the FrozenTrial; job_return may be None);
        interrupted: its job was stopped with the driver, or never launched.
    on_sweep_end(config, sweep_dir, error, stopped_cells) -> None
        always, in a `finally`; error is the exception that ends the sweep (CellsStoppedError when
        some cells stopped early), or None; stopped_cells are their labels.

Errors in on_sweep_start propagate (nothing has been launched yet); errors in the per-trial hooks
and in on_sweep_end are logged and the sweep goes on.
"""

import logging
from typing import Any

log = logging.getLogger(__name__)

HOOKS = ("on_sweep_start", "on_trial_prepared", "on_trial_end", "on_sweep_end")
# The trial user attribute, and results.csv column, holding the tracker's run id for the trial.
TRACKER_RUN_ID_ATTR = "mlflow_run_id"


class Observers:
    def __init__(self, hydra_callbacks: Any) -> None:
        callbacks = getattr(hydra_callbacks, "callbacks", None) or []
        self.observers = [cb for cb in callbacks if any(hasattr(cb, name) for name in HOOKS)]

    def sweep_start(self, **kwargs: Any) -> None:
        for obs in self.observers:
            if hasattr(obs, "on_sweep_start"):
                obs.on_sweep_start(**kwargs)

    def trial_prepared(self, **kwargs: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for obs in self.observers:
            if hasattr(obs, "on_trial_prepared"):
                extra.update(self._safely(obs.on_trial_prepared, **kwargs) or {})
        return extra

    def trial_end(self, **kwargs: Any) -> None:
        for obs in self.observers:
            if hasattr(obs, "on_trial_end"):
                self._safely(obs.on_trial_end, **kwargs)

    def sweep_end(self, **kwargs: Any) -> None:
        for obs in self.observers:
            if hasattr(obs, "on_sweep_end"):
                self._safely(obs.on_sweep_end, **kwargs)

    @staticmethod
    def _safely(hook: Any, **kwargs: Any) -> Any:
        try:
            return hook(**kwargs)
        except Exception:  # a tracker failing must not lose the sweep
            log.exception("sweep observer %s failed", getattr(hook, "__qualname__", hook))
            return None
