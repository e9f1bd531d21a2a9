"""One Optuna study per cell: storage, creation, resume and the counts the dispatcher needs."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from .errors import SweepConfigError

if TYPE_CHECKING:
    import optuna

    from ._cells import Cell

log = logging.getLogger(__name__)

JOURNAL_NAME = "optuna.journal"
# User attributes bench keeps on each trial.
ATTR_JOB_NUM = "job_num"
ATTR_JOB_DIR = "job_dir"
ATTR_ERROR = "error"
ATTR_INTERRUPTED = "interrupted"  # left RUNNING by a driver that died; its params were re-queued
ATTR_DURATION = "duration_s"


def storage_location(storage: str | None, sweep_dir: str) -> str:
    """The storage as a string both the driver and jobs can open: a URL or a journal file path."""
    if storage is None:
        return os.path.abspath(os.path.join(sweep_dir, JOURNAL_NAME))
    return storage


def open_storage(location: str) -> Any:
    """An Optuna storage for a URL (sqlite:///..., postgresql://...) or a journal file path.

    The journal file is the default because it needs no server and its locking works on the
    shared filesystems SLURM clusters have; SQLite over NFS does not.
    """
    import optuna

    if "://" in location:
        return optuna.storages.RDBStorage(location, heartbeat_interval=None)
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(location, lock_obj=JournalFileSymlinkLock(location)))


def study_name_for(prefix: str | None, cell: Cell) -> str:
    return f"{prefix or 'bench'}[{cell.label}]"


def open_study(cell: Cell, name: str, storage: Any, sampler_cfg: Any, pruner_cfg: Any) -> optuna.Study:
    import optuna

    # Fresh sampler and pruner per cell: their state (RNG, startup counts) belongs to one study.
    sampler = instantiate(sampler_cfg) if sampler_cfg else None
    pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner,
        direction=cell.direction, load_if_exists=True,
    )
    if study.direction.name.lower() != cell.direction:
        raise SweepConfigError(
            f"study {name!r} in this storage was created to {study.direction.name.lower()}, but cell "
            f"{cell.label} now asks to {cell.direction}; use a new sweep dir or study_name"
        )
    study.set_user_attr("cell", cell.label)
    study.set_user_attr("metric", cell.metric)
    return study


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a dead driver: mark them FAIL and queue their parameters again.

    Returns how many were recovered. They are not counted as failures for max_failure_rate.
    """
    from optuna.trial import TrialState

    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
        recovered += 1
    return recovered


def counts(study: optuna.Study) -> dict[str, int]:
    """complete / pruned / failed (excluding interrupted) / waiting trial counts."""
    from optuna.trial import TrialState

    out = {"complete": 0, "pruned": 0, "failed": 0, "waiting": 0}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif trial.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif trial.state == TrialState.FAIL and not trial.user_attrs.get(ATTR_INTERRUPTED):
            out["failed"] += 1
        elif trial.state == TrialState.WAITING:
            out["waiting"] += 1
    return out


def max_job_num(studies: list[optuna.Study]) -> int:
    nums = [t.user_attrs.get(ATTR_JOB_NUM, -1) for s in studies for t in s.get_trials(deepcopy=False)]
    return max(nums, default=-1)
