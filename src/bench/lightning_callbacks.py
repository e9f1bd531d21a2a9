"""Lightning callbacks bench adds to every Trainer."""

from __future__ import annotations

import logging
import math
import time

import lightning.pytorch as pl

from bench.errors import MetricNotLoggedError
from bench.objectives import PARAMS_M, VAL_IMAGES_PER_S

log = logging.getLogger(__name__)


class SplitGuard(pl.Callback):
    """Before the first epoch (after the trainer has set the datamodule up for fitting), compares
    the validation and test samples it resolved; the same samples stop the cell (bench.data.heldout)."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.datamodule is not None:
            from bench.data.heldout import check_distinct

            # TerraTorch's GeoBenchV2*DataModule proxies keep the geobench_v2 datamodule, and so its datasets, in
            # _proxy: compared there, or the check would find no datasets to compare.
            check_distinct(getattr(trainer.datamodule, "_proxy", trainer.datamodule), self.task_name)


class MetricMonitor(pl.Callback):
    """Checks the task metric is logged at the first validation, and logs it each epoch.

    EarlyStopping and ModelCheckpoint would also fail on a missing metric, but only at the end of
    the first epoch and with Lightning's wording; this names the task's metrics right after the
    sanity check. It must come before them in the callback list. `also`: the other metrics a task
    with several objectives lists (bench.objectives), checked at the same time, so a typo in one
    fails in seconds rather than after the whole fit.
    """

    def __init__(
        self, metric: str, mode: str, also: tuple[str, ...] = (), listed: tuple[str, ...] = ("val/", "train/")
    ) -> None:
        # listed: the prefixes of the metrics a refusal names (the task class's validation and training ones).
        self.metric, self.mode, self.also, self.listed = metric, mode, also, listed
        self.checked = False

    def on_validation_end(self, trainer, pl_module) -> None:
        logged = trainer.callback_metrics
        if not self.checked:
            missing = [name for name in (self.metric, *self.also) if name not in logged]
            if missing:
                available = sorted(k for k in logged if k.startswith(self.listed))
                named = (
                    f"task.metric={self.metric!r} is"
                    if not self.also
                    else f"task.metric lists {', '.join(map(repr, missing))}, which {'is' if len(missing) == 1 else 'are'}"
                )
                raise MetricNotLoggedError(
                    f"{named} never logged by {type(pl_module).__name__}. "
                    f"Metrics it logs: {', '.join(available) or '(none)'}"
                )
            self.checked = True
        if not trainer.sanity_checking:
            log.info("epoch %d: %s = %.4f", trainer.current_epoch, self.metric, float(logged[self.metric]))


class TrialProgress(pl.Callback):
    """Tells the sweep's driver where this trial is after every validation epoch: the epoch out of
    the trainer's max_epochs and the task metric's value (hydra_plugins.bench_sweeper.api's
    report_progress, one small write to the sweep's Optuna storage), for its live view. Every trial
    of a sweep gets it, pruned or not, tuning or repeat, one objective or several."""

    def __init__(self, trial, metric: str, epochs_before: int = 0, total_epochs: int | None = None) -> None:
        # k-fold tuning: the epochs of the folds before this one, and of all folds (bench.folds)
        self.trial, self.metric = trial, metric
        self.epochs_before, self.total_epochs = epochs_before, total_epochs

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        from hydra_plugins.bench_sweeper.api import report_progress

        value = trainer.callback_metrics.get(self.metric)
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        epoch = self.epochs_before + trainer.current_epoch + 1
        report_progress(self.trial, epoch, self.total_epochs or max_epochs, None if value is None else float(value))


class OptunaPruning(pl.Callback):
    """Reports the task metric to the trial's Optuna study after every validation epoch and
    stops the run (optuna.TrialPruned) when the study's pruner says so.

    It runs inside the job, wherever the launcher put it; the sweeper records the trial as PRUNED
    with the last reported value. In a multi-process trial (bench.ddp) only global rank 0 has the
    trial (`trial` None on the others): it reports once per epoch and broadcasts its decision, so
    every rank stops at the same epoch instead of waiting on rank 0 in the next collective.
    """

    def __init__(self, trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        import optuna

        from hydra_plugins.bench_sweeper.api import report_and_maybe_prune

        pruned = None
        if self.trial is not None:
            try:
                report_and_maybe_prune(self.trial, float(trainer.callback_metrics[self.metric]), trainer.current_epoch)
            except optuna.TrialPruned as exc:
                pruned = str(exc)
        if trainer.world_size > 1:
            pruned = trainer.strategy.broadcast(pruned, src=0)
        if pruned is not None:
            raise optuna.TrialPruned(pruned)


class RankRecord(pl.Callback):
    """A multi-process trial: each rank writes ranks/<rank>.json (its pid, the world size) as it
    starts fitting (bench.ddp.record_rank)."""

    def __init__(self, output_dir) -> None:
        self.output_dir = output_dir

    def on_fit_start(self, trainer, pl_module) -> None:
        from bench.ddp import record_rank

        record_rank(self.output_dir, trainer.global_rank, trainer.world_size)


class CostMeter(pl.Callback):
    """The cost metrics of a multi-objective task (bench.objectives), logged every validation epoch:
    the model's parameters in millions, and its inference throughput (validation images per second,
    forward passes only: the time between each validation batch's start and end, the GPU synced;
    the last validation epoch's is the one kept). It also keeps each validation epoch's values of
    the task's `learned` metrics, so the other listed metrics can be read at the best epoch.

    Its state travels in last.ckpt (state_dict), so a requeued job that resumes still knows the
    epochs before the interruption: its best epoch may be one of them."""

    def __init__(self, learned: tuple[str, ...]) -> None:
        self.learned = learned
        self.params_m = math.nan
        self.images_per_s = math.nan
        self.epochs: dict[int, dict[str, float]] = {}
        self._images, self._seconds = 0, 0.0
        self._started: float | None = None

    def costs(self) -> dict[str, float]:
        return {PARAMS_M: self.params_m, VAL_IMAGES_PER_S: self.images_per_s}

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "images_per_s": self.images_per_s}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = dict(state_dict["epochs"])
        self.images_per_s = state_dict["images_per_s"]

    def on_fit_start(self, trainer, pl_module) -> None:
        self.params_m = sum(p.numel() for p in pl_module.parameters()) / 1e6

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._images, self._seconds = 0, 0.0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            _sync(pl_module)
            self._started = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or self._started is None:
            return
        _sync(pl_module)
        self._seconds += time.perf_counter() - self._started
        self._images += _batch_size(batch)
        self._started = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if self._seconds > 0:
            self.images_per_s = self._images / self._seconds
            pl_module.log(VAL_IMAGES_PER_S, self.images_per_s)
        pl_module.log(PARAMS_M, self.params_m)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:  # after the module logged this epoch's metrics
            logged = trainer.callback_metrics
            self.epochs[trainer.current_epoch] = {name: float(logged[name]) for name in self.learned if name in logged}


def _sync(pl_module) -> None:
    import torch

    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)  # kernels run asynchronously: time them finished


def _batch_size(batch) -> int:
    """Tiles in a validation batch: TerraTorch's batches are dicts with an "image" tensor (or a dict
    of them, one per modality)."""
    image = batch.get("image") if isinstance(batch, dict) else batch
    if isinstance(image, dict):
        image = next(iter(image.values()))
    if isinstance(image, (list, tuple)):
        image = image[0]
    if image is None:
        raise ValueError(f"a validation batch without images: {type(batch).__name__}")
    return int(image.shape[0])
