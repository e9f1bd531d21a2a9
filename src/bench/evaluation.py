"""The test split: evaluated by seed repeats on their best checkpoint, never by a tuning trial.

A tuning trial that read the test split would let test scores leak into model selection. The
sweeper tells each job its phase (<trial key>.phase); this module is the one place bench calls
trainer.test, and it refuses a tuning trial before touching any test file.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from bench.errors import TestSplitError
from bench.spec import TrialSpec
from hydra_plugins.bench_sweeper.trial import PHASE_REPEAT, PHASE_TUNE


def wants_test(cfg: DictConfig, phase: str | None) -> bool:
    """Repeats always test; a single run tests when evaluate_test=true. In a sweep (the driver's
    check of each cell, phase None, or a tuning trial) evaluate_test=true is refused."""
    if phase == PHASE_REPEAT:
        return True
    if cfg.get("evaluate_test", False) and (phase == PHASE_TUNE or _in_multirun()):
        raise TestSplitError(_TUNING_REFUSAL)
    return phase is None and bool(cfg.get("evaluate_test", False))


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


_TUNING_REFUSAL = ("evaluate_test=true in a tuning trial: tuning never reads the test split. Use "
                   "hydra.sweeper.repeats=N: each cell's best params are then trained with N seeds and tested "
                   "on their best checkpoints.")


def test_on_best_checkpoint(trainer: Any, task: Any, datamodule: Any, checkpoint: str, spec: TrialSpec,
                            phase: str | None) -> dict[str, float]:
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
    if spec.test_metric not in metrics:
        raise TestSplitError(
            f"task '{spec.task_name}': the test metric {spec.test_metric!r} was not logged; the test split logged "
            f"{', '.join(sorted(metrics)) or 'nothing'}. Set task.test_metric to one of them."
        )
    return metrics
