"""The test split: evaluated by seed repeats on their best checkpoint, never by a tuning trial.

A tuning trial that read the test split would let test scores leak into model selection. The
sweeper tells each job its phase (<trial key>.phase); this module is the one place bench calls
trainer.test, and it refuses a tuning trial before touching any test file.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from bench.errors import SplitOverlapError, TestSplitError
from bench.spec import Stages, TrialSpec
from hydra_plugins.bench_sweeper.api import PHASE_REPEAT, PHASE_TUNE


def wants_test(cfg: DictConfig, phase: str | None) -> bool:
    """Repeats always test; a single run tests when evaluate_test=true. In a sweep (the driver's
    check of each cell, phase None, or a tuning trial) evaluate_test=true is refused."""
    return test_plan(cfg, phase)[0]


def test_plan(cfg: DictConfig, phase: str | None) -> tuple[bool, bool]:
    """(whether this job tests, whether it belongs to a sweep), each decided once: preflight puts
    the first on the TrialSpec (spec.tests) and needs the second for its own checks."""
    sweeping = in_sweep(cfg, phase)
    if phase == PHASE_REPEAT:
        return True, sweeping
    asked = bool(cfg.get("evaluate_test", False))
    if asked and sweeping:  # a tuning trial, or the driver's check of a cell
        raise TestSplitError(_TUNING_REFUSAL)
    return asked, sweeping


def in_sweep(cfg: DictConfig, phase: str | None) -> bool:
    """A sweep's job, or the sweeper's driver checking a cell before launching it."""
    return phase is not None or _in_multirun(cfg)


def _in_multirun(cfg: DictConfig) -> bool:
    """A job reads the mode from its Hydra run; the sweeper's driver checks each cell's composed
    config before any job exists (HydraConfig is not set there), and that config carries it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if OmegaConf.select(cfg, "hydra.mode", default=None) == RunMode.MULTIRUN:
        return True
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


_TUNING_REFUSAL = (
    "evaluate_test=true in a sweep: its tuning trials never read the test split. Use "
    "hydra.sweeper.repeats=N: each cell's best params are then trained with N seeds and tested "
    "on their best checkpoints."
)


def test_on_best_checkpoint(
    trainer: Any, task: Any, datamodule: Any, checkpoint: str, spec: TrialSpec, phase: str | None
) -> dict[str, float]:
    """Every test metric TerraTorch logs, with the weights of the best validation epoch."""
    if phase == PHASE_TUNE:
        raise TestSplitError(_TUNING_REFUSAL)
    if not checkpoint:
        raise TestSplitError(f"task '{spec.task_name}': no best checkpoint was saved, so there is nothing to test")
    try:
        results = trainer.test(task, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    except Exception as exc:
        where = spec.datamodule.get("test_data_root")
        raise TestSplitError(
            f"task '{spec.task_name}': the test split could not be evaluated: {type(exc).__name__}: {exc}"
            + (f". Check the test files under {where}" if where else "")
        ) from exc
    metrics = {key: float(value) for key, value in (results[0] if results else {}).items()}
    _refuse_validation_as_test(trainer, task, datamodule, checkpoint, spec, metrics)
    if spec.test_metric not in metrics:
        raise TestSplitError(
            f"task '{spec.task_name}': the test metric {spec.test_metric!r} was not logged; the test split logged "
            f"{', '.join(sorted(metrics)) or 'nothing'}. Set task.test_metric to one of them."
        )
    return metrics


def _refuse_validation_as_test(
    trainer: Any, task: Any, datamodule: Any, checkpoint: str, spec: TrialSpec, test: dict[str, float]
) -> None:
    """The same weights on the validation split: if every metric, the loss included, comes out
    exactly as on the test split, the two are the same samples (a copy, or a datamodule that
    lists neither), and the test scores are validation scores. Costs one validation pass."""
    loggers, trainer.loggers = trainer.loggers, []  # a check, not a point of the run's validation curve
    try:
        results = trainer.validate(task, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    finally:
        trainer.loggers = loggers
    val = {key: float(value) for key, value in (results[0] if results else {}).items()}
    if same_samples(val, test, spec.stages):
        raise SplitOverlapError(
            f"task '{spec.task_name}': its best checkpoint scores exactly the same on the validation and the test "
            f"split ({', '.join(f'{k} = {v:.6g}' for k, v in sorted(test.items()))}): they are the same samples, so "
            "its test scores would be the validation scores that chose the model. Give it a held-out test split, or "
            "hold out a validation set from the training split (task.validation_from_train)."
        )


def same_samples(val: dict[str, float], test: dict[str, float], stages: Stages = Stages()) -> bool:
    """Every metric logged on both splits equal, the loss among them: a continuous value two
    different sets of samples do not share by chance (an accuracy of 1.0 on both can). A task that
    logs no validation loss (detection: only mAP and mAR) needs one shared value other than 0, 1 and
    -1 (torchmetrics' "no such object"), which an untrained detector's both splits give alike."""
    val_names = {name: key for key in val if (name := stages.bare(key, "val")) is not None}
    test_names = {name: key for key in test if (name := stages.bare(key, "test")) is not None}
    shared = set(val_names) & set(test_names)
    if len(shared) < 2:
        return False
    if stages.val_loss and "loss" not in shared:
        return False
    if not stages.val_loss and all(test[test_names[k]] in (0.0, 1.0, -1.0) for k in shared):
        return False
    return all(
        abs(val[val_names[k]] - test[test_names[k]]) <= 1e-9 * max(1.0, abs(test[test_names[k]])) for k in shared
    )
