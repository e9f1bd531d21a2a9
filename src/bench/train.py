"""train(cfg): one TerraTorch fine-tuning run -> the best validation value.

A seed repeat (or a single run with evaluate_test=true) then tests the best checkpoint and returns
{"value": best validation value, "test_value": the task metric on test, every test metric,
"checkpoint": its path}; a tuning trial never reads the test split (bench.evaluation).

Torch, Lightning and TerraTorch are imported inside train(), after preflight() has checked the
input, so composing configs, --help, --cfg and bad input never pay for the 10-16 s import.

Every call builds its own datamodule, task, Trainer and callbacks, and reseeds, so a process can
call it many times (sweeps on the basic launcher, tests) without state leaking between calls; an
attempt that runs out of GPU memory is rebuilt the same way at half the batch size (bench.oom).
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench import ddp
from bench.devices import assign_trial_devices
from bench.errors import PretrainedWeightsError
from bench.objectives import objective_values
from bench.oom import BatchPlan, allowed_retries, fit_with_oom_retries
from bench.preflight import preflight
from bench.probes import probe_kind
from bench.resume import cluster_plugins, drop_resume_point, resume_checkpoint
from bench.spec import TrialSpec, plain_dict

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import optuna

    from bench.lightning_callbacks import CostMeter
    from bench.tracking.trial_logger import TrialLogger
    from hydra_plugins.bench_sweeper.api import FoldReporter

log = logging.getLogger(__name__)

# TerraTorch and torchmetrics warn about things that are expected on these small datasets.
_QUIET = [
    r".*compute.* method of metric .* was called before the .*update.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    # Said by every ObjectDetectionTask built (GEO-Bench-2's detection datasets): nothing a run can act on.
    r".*The Object Detection Task has to be considered experimental.*",
    # A multi-process trial (bench.ddp): TerraTorch logs torchmetrics' computed values, which
    # torchmetrics has already gathered from every rank.
    r".*It is recommended to use .self\.log\(.*sync_dist=True.*",
]


def train(cfg: DictConfig, tracking: TrialLogger | None = None) -> float | list[float] | dict[str, Any]:
    """_train(), and a multi-process trial's child ranks gone by the time it returns or raises."""
    try:
        return _train(cfg, tracking)
    finally:
        ddp.reap_children()


def _train(cfg: DictConfig, tracking: TrialLogger | None = None) -> float | list[float] | dict[str, Any]:
    """Fit the configured model on the configured task; return the best validation metric (and,
    when testing, the test metrics of the best checkpoint; after out-of-memory retries, the batch
    size and accumulation that ran).

    `tracking`: the trial's MLflow run (bench.tracking.trial_logger), which the entry point opened
    and closes with the outcome; per-epoch metrics, OOM-retry tags and the best checkpoint go there.
    None: nothing is tracked. One trial, top to bottom:
      1. preflight: the merged, checked TrialSpec, with the trial's phase, number and whether it
         tests (decided there, once), and the OOM retries allowed, before the torch import so bad
         input fails in about a second
      2. devices, before anything initialises CUDA; then Lightning, and its logs routed
      3. the Optuna trial to report progress to (every trial of a sweep), to report to and be
         pruned by (tuning trials only: repeats never prune)
      4. fit, rebuilt from scratch at half the batch size after running out of GPU memory
      5. the best checkpoint recorded, the resume point dropped, the OOM retries tagged
      6. one value per objective (a multi-objective task)
      7. the test split on the best checkpoint, when the spec says this job tests
    """
    from bench.evaluation import test_on_best_checkpoint
    from bench.fold_tuning import tune_on_folds
    from hydra_plugins.bench_sweeper.api import PHASE_TUNE, job_trial, trial_folds

    spec = preflight(cfg)
    max_oom_retries = allowed_retries(cfg.get("oom_retries", 3))  # a bad value fails before the torch import too
    devices = assign_trial_devices(cfg)

    import lightning.pytorch  # noqa: F401  (its import adds the console handler that the next line removes)

    _route_framework_logs()
    if probe_kind(cfg) is not None:  # protocol=knn|linear_probe: a head on cached features (bench.probes)
        from bench.probes.run import run_probe

        return run_probe(cfg, spec)
    output_dir = Path(cfg.output_dir)
    trainer_args = plain_dict(cfg.trainer)
    if devices.accelerator != "auto":
        trainer_args.update(accelerator=devices.accelerator, devices=devices.devices)
    # The configured batch size and accumulation are the first attempt's; an OOM retry halves one
    # and doubles the other (bench.oom). N processes (bench.ddp) load batch_size / N each.
    processes = devices.devices if devices.accelerator != "auto" else 1
    batch_size = ddp.per_rank_batch_size(spec.datamodule["batch_size"], processes)
    first = BatchPlan(batch_size, int(trainer_args.pop("accumulate_grad_batches", None) or 1))
    if processes > 1:  # no OOM retries: a retry would need new ranks
        max_oom_retries = ddp.prepare(cfg, output_dir, processes, trainer_args, tracking)
    # The sweep's trial (None for a single run and a child rank): every trial reports its progress
    # to the driver's view; a tuning trial of a one-objective study also reports its metric and may
    # be pruned.
    job = None if ddp.is_child_rank() else job_trial(cfg)
    trial = job if job is not None and spec.phase == PHASE_TUNE and len(job.study.directions) == 1 else None
    if folds := (trial_folds(cfg) if spec.phase == PHASE_TUNE else None):  # k-fold tuning (bench.fold_tuning)
        ddp.refuse_folds(processes)
        return tune_on_folds(cfg, spec, folds, first, max_oom_retries, trainer_args, trial, output_dir, job)
    fitted, plan = fit_with_oom_retries(
        lambda attempt: _fit(cfg, spec, attempt, trainer_args, trial, output_dir, tracking, job),
        first,
        max_oom_retries,
        discard_attempt=lambda: shutil.rmtree(output_dir / "checkpoints", ignore_errors=True),
        label=spec.task_name,
    )
    checkpoint = fitted.checkpoint

    best = checkpoint.best_model_score
    best_value = float(best) if best is not None else math.nan
    log.info("%s: best %s = %.4f (%s)", spec.task_name, spec.metric, best_value, checkpoint.best_model_path)
    if tracking is not None:
        tracking.record_checkpoint(checkpoint.best_model_path)
    drop_resume_point(cfg, output_dir)
    retried = plan.as_outputs() if plan.oom_retries else {}  # the sweeper keeps them as trial outputs
    if tracking is not None and retried:
        tracking.tag({f"bench.{key}": v for key, v in retried.items()})
    if fitted.features is not None:  # protocol=frozen on cached features (bench.probes.frozen)
        retried["embeddings_built"] = fitted.features.built
    value: float | list[float] = best_value
    if spec.objectives is not None and fitted.meter is not None:  # one value per listed metric (bench.objectives)
        value = objective_values(spec.objectives, best_value, fitted.meter.epochs, fitted.meter.costs(), spec.mode)
        log.info("%s: objectives %s", spec.task_name, dict(zip(spec.objectives.names, value)))
    if not spec.tests:
        return {"value": value, **retried} if retried else value
    # On the best checkpoint, never the last epoch's weights.
    metrics = test_on_best_checkpoint(
        fitted.trainer, fitted.task, fitted.datamodule, checkpoint.best_model_path, spec, spec.phase
    )
    log.info("%s: %s = %.4f on the test split", spec.task_name, spec.test_metric, metrics[spec.test_metric])
    if fitted.features is not None:  # the test split's entry, read or built by the test above
        retried["embeddings_built"] = fitted.features.built
    return {
        "value": value,
        "test_value": metrics[spec.test_metric],
        "checkpoint": checkpoint.best_model_path,
        **metrics,
        **retried,
    }


@dataclass
class _Fitted:
    trainer: pl.Trainer
    task: pl.LightningModule
    datamodule: pl.LightningDataModule
    checkpoint: pl.callbacks.ModelCheckpoint  # keeps the best epoch
    meter: CostMeter | None = None  # for a task with several objectives
    features: Any = None  # protocol=frozen on cached encoder features (bench.probes.frozen)


def _fit(
    cfg: DictConfig,
    spec: TrialSpec,
    plan: BatchPlan,
    trainer_args: dict[str, Any],
    trial: optuna.trial.Trial | FoldReporter | None,
    output_dir: Path,
    tracking: TrialLogger | None = None,
    job: optuna.trial.Trial | None = None,
    fold: tuple[list[int], list[int]] | None = None,
    progress: tuple[int, int | None] = (0, None),  # k-fold: epochs of the folds before, of all folds
) -> _Fitted:
    """One attempt, everything built from scratch and reseeded: an OOM retry (bench.oom) starts
    from the same initial weights as the first attempt, at its own batch size."""
    import lightning.pytorch as pl
    import optuna
    import terratorch  # noqa: F401  (its import resets UserWarnings to "once" ahead of earlier filters)

    from bench.data.heldout import build_datamodule
    from bench.lightning_callbacks import CostMeter, MetricMonitor, OptunaPruning, SplitGuard, TrialProgress
    from bench.probes.frozen import prepare as prepare_frozen

    # After TerraTorch's import, and before the task, whose class may warn as it is built.
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if fold is not None:  # k-fold tuning: a fold's training and validation samples (bench.folds)
        from bench.folds import fold_datamodule

        datamodule = fold_datamodule(spec, plan.batch_size, *fold)
    else:
        datamodule = build_datamodule(spec, plan.batch_size)
    task = _build_task(spec, cfg.model.name)
    datamodule, task, features = prepare_frozen(cfg, spec, plan.batch_size, datamodule, task, fold)
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        filename="best",
        monitor=spec.metric,
        mode=spec.mode,
        save_top_k=1,
        # Weights are all that testing and save_models need; the optimizer state would triple it.
        save_weights_only=True,
        enable_version_counter=False,
    )
    # last.ckpt lets a requeued (SLURM) or retried (Ray) trial resume instead of starting over; a
    # launcher that never reruns a job in its own dir (launcher.reruns_jobs: false, the local one)
    # gets none, unless keep_last_checkpoint asks for it. Not `save_last=True`: Lightning 2.6 only
    # refreshes that when the metric improved. Saved at train-epoch end, after validation, so a
    # resumed job starts the next epoch instead of redoing it.
    resume_point = (
        pl.callbacks.ModelCheckpoint(
            dirpath=output_dir / "checkpoints",
            filename="last",
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        if OmegaConf.select(cfg, "launcher.reruns_jobs", default=True) or cfg.get("keep_last_checkpoint")
        else None
    )
    # Several objectives: costs measured and logged, the other listed metrics checked and kept.
    others = spec.objectives.learned[1:] if spec.objectives else ()
    meter = CostMeter(spec.objectives.learned) if spec.objectives else None
    callbacks = [
        *([SplitGuard(spec.task_name)] if spec.guards_splits else []),
        *([meter] if meter else []),
        MetricMonitor(spec.metric, spec.mode, also=others, listed=(spec.stages.val, spec.stages.train)),
        pl.callbacks.EarlyStopping(monitor=spec.metric, mode=spec.mode, patience=spec.patience),
        checkpoint,
        *([resume_point] if resume_point else []),
    ]
    if job is not None:  # before pruning, which ends the epoch's callbacks with TrialPruned
        callbacks.append(TrialProgress(job, spec.metric, *progress))
    multi = trainer_args.get("strategy") is not None  # a multi-process trial (bench.ddp)
    if trial is not None or multi:  # on every rank: rank 0 broadcasts its prune decision
        callbacks.append(OptunaPruning(trial, spec.metric))
    callbacks += ddp.rank_callbacks(output_dir) if multi else []
    callbacks += _configured_callbacks(cfg)
    loggers: list[pl.loggers.Logger] = [
        pl.loggers.CSVLogger(output_dir, name="metrics")
    ]  # metrics/version_N/metrics.csv
    if tracking is not None:
        loggers.append(tracking.lightning_logger())  # one MLflow request per epoch
    trainer = pl.Trainer(
        **{"plugins": cluster_plugins(), **trainer_args},
        accumulate_grad_batches=plan.accumulate_grad_batches,
        max_epochs=spec.max_epochs,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=output_dir,
    )
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(output_dir))
    except optuna.TrialPruned:
        if tracking is not None:
            tracking.record_checkpoint(checkpoint.best_model_path)  # its best epoch so far stays findable
        drop_resume_point(cfg, output_dir)  # a pruned trial is never run again
        raise
    return _Fitted(trainer, task, datamodule, checkpoint, meter, features)


def _configured_callbacks(cfg: DictConfig) -> list:
    """cfg.callbacks: extra Lightning callbacks by name, each {_target_: ..., its arguments}, as in
    lightning-hydra-template; a null entry is off (an override can switch a preset's one off)."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


class _DropLitLoggerTip(logging.Filter):
    """Lightning advertises its cloud logger on every Trainer: noise in a benchmark's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _route_framework_logs() -> None:
    """Framework output goes where the job's logging config sends it (hydra/job_logging=bench: the
    job's own log file, plus the console in a single run), once and in one format:
      - the `lightning` package gives its logger a console handler of its own at import, which
        printed every Lightning line twice and, in sweeps, on the driver's console;
      - warnings (deprecations and the like) become log records instead of bare stderr lines."""
    logging.getLogger("lightning").handlers.clear()
    logging.captureWarnings(True)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLitLoggerTip())


def _build_task(spec: TrialSpec, model_name: str):
    module_name, class_name = spec.task_class.rsplit(".", 1)
    task_class = getattr(importlib.import_module(module_name), class_name)
    try:
        return task_class(**spec.task_kwargs)
    except Exception as exc:
        # preflight checks the weights bench knows about; this catches any other backbone whose
        # weights TerraTorch/timm try to fetch from the hub.
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        if isinstance(exc, (HfHubHTTPError, LocalEntryNotFoundError)):
            raise PretrainedWeightsError(
                f"model={model_name}: building backbone {spec.task_kwargs['model_args'].get('backbone')!r} "
                f"needed pretrained weights from the Hugging Face Hub, which failed: {exc}. Set "
                "model.model_args.backbone_ckpt_path to a local checkpoint, or "
                "model.model_args.backbone_pretrained=false."
            ) from exc
        raise
