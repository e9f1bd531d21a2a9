"""Job side: the Optuna trial a sweep job belongs to, so it can report and be pruned.

The sweeper puts `trial.{study,storage,id,number,cell,phase}` into every job's config, under the key
named by hydra.sweeper.trial_key, which the job reads from its own Hydra config, so the two sides
can never disagree on it. The job process, wherever it runs, reopens the same storage; the pruner
comes from the job's own hydra.sweeper config too.
"""

from __future__ import annotations

import logging
import math
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

PHASE_TUNE, PHASE_REPEAT = "tune", "repeat"  # the values of <trial_key>.phase
# The user attribute report_progress() writes and the driver's live view reads:
# {"epoch": int, "max_epochs": int | None, "value": float | None}.
PROGRESS_ATTR = "progress"

log = logging.getLogger(__name__)


def _trial_node(cfg: DictConfig) -> tuple[Any, Any]:
    """(this job's trial node, the sweeper config), or (None, None) outside a bench sweep."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    sweeper = OmegaConf.select(cast(DictConfig, HydraConfig.get()), "sweeper", default=None)  # a DictConfig at runtime
    key = OmegaConf.select(sweeper, "trial_key", default=None) if sweeper is not None else None
    node = OmegaConf.select(cfg, key, default=None) if key else None
    return (node, sweeper) if node and node.get("id") is not None else (None, None)


def trial_phase(cfg: DictConfig) -> str | None:
    """ "tune" for a tuning trial, "repeat" for a seed repeat of a cell's best params, None outside
    a bench sweep. A tuning trial must never read the test split; a repeat evaluates it."""
    node, _ = _trial_node(cfg)
    return None if node is None else node.get("phase") or PHASE_TUNE


def trial_number(cfg: DictConfig) -> int | None:
    """The trial's number in its cell's study (0 for the cell's first), None outside a bench sweep."""
    node, _ = _trial_node(cfg)
    return None if node is None or node.get("number") is None else int(node.number)


def job_trial(cfg: DictConfig) -> Any:
    """The optuna.trial.Trial this job runs, whatever its phase and however many objectives its study
    has (for report_progress); None outside a bench sweep."""
    node, sweeper = _trial_node(cfg)
    if node is None:
        return None
    import optuna
    from hydra.utils import instantiate

    from ._private_apis import trial_by_id
    from ._studies import open_storage

    pruner_cfg = OmegaConf.select(sweeper, "pruner", default=None)
    pruner = instantiate(pruner_cfg) if pruner_cfg else None
    study = optuna.load_study(study_name=node.study, storage=open_storage(node.storage), pruner=pruner)
    return trial_by_id(study, int(node.id))


def trial_from_config(cfg: DictConfig) -> Any:
    """The optuna.trial.Trial this job runs to report to and be pruned by; None outside a bench sweep,
    and for a multi-objective study, which Optuna can neither take reports for nor prune."""
    trial = job_trial(cfg)
    return None if trial is None or len(trial.study.directions) > 1 else trial


def report_progress(trial: Any, epoch: int, max_epochs: int | None, value: float | None = None) -> None:
    """Where a running trial is, for the driver's live view: `epoch` (counted from 1) out of
    `max_epochs` (None: unknown), and its latest validation value. Call it once per validation
    epoch, from any Hydra app a bench sweep runs (`trial`: job_trial(cfg)); it works for every
    launcher, since it is written where the job already reports (a user attribute of the trial in
    the sweep's Optuna storage, PROGRESS_ATTR), and for multi-objective studies, which take no
    report(). It costs one small storage write; a write that fails is logged, never raised: the
    view is not worth a trial."""
    if trial is None:
        return
    shown = None if value is None or not math.isfinite(value) else float(value)
    try:
        trial.set_user_attr(
            PROGRESS_ATTR,
            {"epoch": int(epoch), "max_epochs": None if max_epochs is None else int(max_epochs), "value": shown},
        )
    except Exception:  # the storage is busy or gone: the trial goes on
        log.debug("could not record trial progress", exc_info=True)


def report_and_maybe_prune(trial: Any, value: float, step: int) -> None:
    """Report an intermediate value; raise optuna.TrialPruned when the pruner says stop."""
    import optuna

    trial.report(value, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step} with value {value:.6g}")


# k-fold tuning (hydra.sweeper.folds): the job's side.
FOLD_STD = "fold_std"  # the output (results.csv column) with the folds' standard deviation


def trial_folds(cfg: DictConfig) -> int | None:
    """K when this job is a tuning trial of a k-fold sweep (hydra.sweeper.folds=K): it should train
    K models, one per fold, and return their mean; None otherwise (a repeat, a single split, no sweep)."""
    node, _ = _trial_node(cfg)
    folds = None if node is None else node.get("folds")
    return int(folds) if folds else None


def fold_outputs(values: list[float]) -> dict[str, Any]:
    """What a k-fold job returns: {"value": the mean, "fold_0": ..., "fold_{K-1}": ..., "fold_std":
    the population standard deviation}; the sweeper keeps all but the value as the trial's outputs,
    which are results.csv's columns."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"value": mean, **{f"fold_{i}": float(v) for i, v in enumerate(values)}, FOLD_STD: std}


class FoldReporter:
    """The trial as one fold of a k-fold job sees it: report(value, step) during fold `fold` (counted
    from 0) reports the running mean, the mean of the finished folds' values (`done`) and this
    value, at step fold * steps_per_fold + step, so every trial's step s means the same folds
    finished and the same epoch of the next one, and a pruner compares like with like. Use it in
    place of the trial for report_and_maybe_prune."""

    def __init__(self, trial: Any, fold: int, done: list[float], steps_per_fold: int) -> None:
        self.trial, self.fold, self.done, self.steps_per_fold = trial, fold, list(done), steps_per_fold

    @property
    def study(self) -> Any:
        return self.trial.study

    def running_mean(self, value: float) -> float:
        return (sum(self.done) + value) / (len(self.done) + 1)

    def report(self, value: float, step: int) -> None:
        self.trial.report(self.running_mean(value), self.fold * self.steps_per_fold + step)

    def should_prune(self) -> bool:
        return bool(self.trial.should_prune())
