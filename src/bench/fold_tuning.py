"""A k-fold tuning trial (hydra.sweeper.folds=K): train()'s branch for it.

  tune_on_folds(...)  one fresh fit per fold (in fold_<i>/, each with train's own OOM retries),
                      pruned on the running mean of the folds done; returns the folds' mean as the
                      trial's value, and each fold's value and their std as outputs

Which samples each fold holds is bench.folds'; this module only runs the fits. Imported inside the
job only (train() dispatches here after its torch import).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from bench.errors import ConfigError
from bench.oom import BatchPlan, fit_with_oom_retries
from bench.resume import drop_resume_point
from bench.spec import TrialSpec

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def tune_on_folds(
    cfg: DictConfig,
    spec: TrialSpec,
    folds: int,
    first: BatchPlan,
    max_oom_retries: int,
    trainer_args: dict[str, Any],
    trial: optuna.trial.Trial | None,
    output_dir: Path,
    job: optuna.trial.Trial | None,
) -> dict[str, Any]:
    """A k-fold tuning trial: one fresh fit per fold (in fold_<i>/), pruned on the running mean;
    returns the folds' mean as the value, and each fold's value and their std as outputs."""
    from bench.folds import train_folds
    from bench.train import _fit
    from hydra_plugins.bench_sweeper.api import FoldReporter, fold_outputs

    if spec.objectives is not None:
        raise ConfigError(f"task '{spec.task_name}': k-fold tuning takes one metric, not several (task.metric)")

    def fit(number: int, train: list[int], held: list[int], done: list[float]) -> float:
        reporter = FoldReporter(trial, number, done, spec.max_epochs) if trial is not None else None
        where = output_dir / f"fold_{number}"
        fitted, _ = fit_with_oom_retries(
            lambda attempt: _fit(
                cfg,
                spec,
                attempt,
                trainer_args,
                reporter,
                where,
                None,
                job,
                fold=(train, held),
                progress=(number * spec.max_epochs, folds * spec.max_epochs),
            ),
            first,
            max_oom_retries,
            discard_attempt=lambda: shutil.rmtree(where / "checkpoints", ignore_errors=True),
            label=spec.task_name,
        )
        drop_resume_point(cfg, where)
        best = fitted.checkpoint.best_model_score
        return float(best) if best is not None else math.nan

    values = train_folds(spec, folds, str(cfg.task.get("type")) == "classification", fit, output_dir)
    outputs = fold_outputs(values)
    log.info("%s: %s over %d folds = %.4f (%s)", spec.task_name, spec.metric, folds, outputs["value"], values)
    return outputs
