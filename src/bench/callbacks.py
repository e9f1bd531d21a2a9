"""Lightning callbacks bench adds to every Trainer."""

from __future__ import annotations

import logging

import lightning.pytorch as pl

from bench.errors import MetricNotLoggedError

log = logging.getLogger(__name__)


class MetricMonitor(pl.Callback):
    """Checks the task metric is logged at the first validation, and logs it each epoch.

    EarlyStopping and ModelCheckpoint would also fail on a missing metric, but only at the end of
    the first epoch and with Lightning's wording; this names the task's metrics right after the
    sanity check. It must come before them in the callback list.
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.checked = False

    def on_validation_end(self, trainer, pl_module) -> None:
        logged = trainer.callback_metrics
        if not self.checked:
            if self.metric not in logged:
                available = sorted(k for k in logged if k.startswith(("val/", "train/")))
                raise MetricNotLoggedError(
                    f"task.metric={self.metric!r} is never logged by {type(pl_module).__name__}. "
                    f"Metrics it logs: {', '.join(available) or '(none)'}"
                )
            self.checked = True
        if not trainer.sanity_checking:
            log.info("epoch %d: %s = %.4f", trainer.current_epoch, self.metric, float(logged[self.metric]))


class OptunaPruning(pl.Callback):
    """Reports the task metric to the trial's Optuna study after every validation epoch and
    stops the run (optuna.TrialPruned) when the study's pruner says so.

    It runs inside the job, wherever the launcher put it; the sweeper records the trial as PRUNED
    with the last reported value.
    """

    def __init__(self, trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        from hydra_plugins.bench_sweeper.trial import report_and_maybe_prune

        report_and_maybe_prune(self.trial, float(trainer.callback_metrics[self.metric]), trainer.current_epoch)
