"""One Optuna study per cell: storage, names, versions, resume checks and interrupted trials.

A study's user attributes say which sweep and cell it belongs to (so results.csv can list every
cell of a sweep dir, also cells the current command did not name), the columns and metric its rows
carry, and the fingerprint of the experiment it holds (_fingerprint.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from ._errors import ResumeMismatchError, SweepConfigError
from ._fingerprint import differences
from ._masking import mask_data
from ._objectives import MAXIMIZE, directions, is_multi
from ._private_apis import journal_bytes_read, running_trial
from ._samplers import build_sampler
from .trial import PHASE_REPEAT as PHASE_REPEAT  # re-exported: the loop and tables read phases here
from .trial import PHASE_TUNE as PHASE_TUNE

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, Trial

    from ._cells import Cell

log = logging.getLogger(__name__)

JOURNAL_NAME = "optuna.journal"
# User attributes bench keeps on each trial.
ATTR_JOB_NUM = "job_num"
ATTR_JOB_DIR = "job_dir"
ATTR_ERROR = "error"
ATTR_INTERRUPTED = "interrupted"  # its job was stopped or died with its driver; its params were re-queued
ATTR_DURATION = "duration_s"
ATTR_STARTED, ATTR_FINISHED = "started_at", "finished_at"  # wall clock (Unix time) in the driver
ATTR_LAUNCHER_JOB = "launcher_job"  # the launcher's id for the job (SLURM job id ...), to find it again
ATTR_SEED = "seed"  # a repeat's seed, fixed when its trial is enqueued
ATTR_OUTPUTS = "outputs"  # what a job returned besides its objective (a repeat's test metrics, checkpoint)
ATTR_REQUEUED_FROM = "requeued_from"  # an interrupted trial whose params were queued again
# ... and on each study.
STUDY_SWEEP, STUDY_CELL, STUDY_VERSION = "sweep_id", "cell", "version"
STUDY_FINGERPRINT, STUDY_SUPERSEDED_BY = "fingerprint", "superseded_by"
# A cell's tuning study, or the study of its seed repeats (_repeats.py); studies without it tune.
STUDY_PHASE = "phase"  # PHASE_TUNE (also when absent) or PHASE_REPEAT, defined with the job side
ON_CHANGE = ("error", "new_version")


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

    path = os.path.abspath(location)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:  # its owner's only, like the MLflow store: it holds every cell's config (masked) and params
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    # A JournalStorage replays the whole file when it is made (0.3 s at 1,000 trials, growing with
    # them), then reads only what was appended since. So a process keeps one per journal: the driver
    # and its in-process trials share it, and a reused Ray worker's next trial reads only the new
    # records. A file that was replaced, or cut below what was read (a repair drops a torn last
    # record), gets a new one.
    st = os.stat(path)
    with _JOURNALS_LOCK:
        kept = _JOURNALS.get(path)
        if kept is not None and kept[0] == (st.st_dev, st.st_ino) and st.st_size >= journal_bytes_read(kept[1]):
            _JOURNALS.move_to_end(path)
            return kept[1]
        storage = optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path)))
        _JOURNALS[path] = ((st.st_dev, st.st_ino), storage)
        while len(_JOURNALS) > _JOURNALS_KEPT:  # a storage holds its every trial in memory: keep a few
            _JOURNALS.popitem(last=False)
        return storage


# open_storage's journals, by absolute path, most recently used last: (device and inode, the storage).
# A driver and a Ray worker use one journal at a time; a process that runs many sweeps (a test
# worker) must not keep them all (a pytest worker holding every sweep's storage ran out of memory).
_JOURNALS: OrderedDict[str, tuple[tuple[int, int], Any]] = OrderedDict()
_JOURNALS_KEPT = 2
_JOURNALS_LOCK = threading.Lock()


def study_name_for(prefix: str | None, label: str, sweep_id: str, version: int = 1) -> str:
    """'bench[task=a,model=x]@<sweep id>' (then '/v2', ...): unique per sweep, so sweeps that share
    a storage never continue each other's studies."""
    return f"{prefix or 'bench'}[{label}]@{sweep_id}" + (f"/v{version}" if version > 1 else "")


@dataclass
class StudyRecord:
    """A study of this sweep and what its results rows need; `current` is False for old versions."""

    name: str
    attrs: dict[str, Any]
    study: Any = None

    @property
    def current(self) -> bool:
        return not self.attrs.get(STUDY_SUPERSEDED_BY)

    def load(self, storage: Any) -> Any:
        import optuna

        if self.study is None:
            self.study = optuna.load_study(study_name=self.name, storage=storage)
        return self.study


def sweep_studies(storage: Any, sweep_id: str, phase: str = PHASE_TUNE) -> dict[str, StudyRecord]:
    """Every study of this sweep and phase (tuning, or repeats) in the storage, by name."""
    # storage.get_all_studies(), not optuna.get_all_study_summaries(): the summaries deep-copy every
    # trial of every study (to count them), which the driver paid on every trial's end
    return {
        s.study_name: StudyRecord(s.study_name, dict(s.user_attrs))
        for s in storage.get_all_studies()
        if s.user_attrs.get(STUDY_SWEEP) == sweep_id and s.user_attrs.get(STUDY_PHASE, PHASE_TUNE) == phase
    }


def _latest(records: dict[str, StudyRecord], label: str) -> StudyRecord | None:
    mine = [r for r in records.values() if r.attrs.get(STUDY_CELL) == label]
    return max(mine, key=lambda r: r.attrs.get(STUDY_VERSION, 1), default=None)


def check_resume(
    cells: list[Cell], fingerprints: dict[str, dict[str, Any]], records: dict[str, StudyRecord], on_change: str
) -> None:
    """Before anything is launched: a resumed cell must still be the experiment it started as."""
    if on_change not in ON_CHANGE:
        raise SweepConfigError(f"hydra.sweeper.on_change={on_change!r}: use one of {list(ON_CHANGE)}")
    if on_change == "new_version":
        return
    changed = []
    for cell in cells:
        latest = _latest(records, cell.label)
        if latest is not None and (
            diff := differences(latest.attrs.get(STUDY_FINGERPRINT, {}), fingerprints[cell.label])
        ):
            changed.append(f"cell {cell.label}: " + "; ".join(diff))
    if changed:
        raise ResumeMismatchError(
            "this sweep dir holds studies started with a different experiment, and resuming would mix the two:\n  "
            + "\n  ".join(changed)
            + "\nRerun with the original settings, or add hydra.sweeper.on_change=new_version to start a new "
            "study version for the changed cells (the old studies stay as history), or use a new hydra.sweep.dir."
        )


def open_cell_study(
    cell: Cell,
    fingerprint: dict[str, Any],
    records: dict[str, StudyRecord],
    storage: Any,
    sweep_id: str,
    prefix: str | None,
    sampler_cfg: Any,
    pruner_cfg: Any,
) -> optuna.Study:
    """The cell's current study: the existing one if its experiment is unchanged, else a new version."""
    import optuna
    from optuna.study import StudyDirection

    latest = _latest(records, cell.label)
    version = 1 if latest is None else latest.attrs.get(STUDY_VERSION, 1)
    if latest is not None and differences(latest.attrs.get(STUDY_FINGERPRINT, {}), fingerprint):
        version += 1  # check_resume allowed it: on_change=new_version
    name = study_name_for(prefix, cell.label, sweep_id, version)
    # Fresh sampler and pruner per cell: their state (RNG, startup counts) belongs to one study.
    sampler = build_sampler(sampler_cfg, cell.label, cell.distributions)
    # Optuna cannot prune a multi-objective study (its jobs do not report either: trial.py).
    pruner = instantiate(pruner_cfg) if pruner_cfg and not is_multi(cell.direction) else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=[
            StudyDirection.MAXIMIZE if d == MAXIMIZE else StudyDirection.MINIMIZE for d in directions(cell.direction)
        ],
        load_if_exists=True,
    )
    name_metrics(study, cell.metric)  # also a study created before bench named them
    done = len(study.get_trials(deepcopy=False))
    if done and sampler_cfg and sampler_cfg.get("seed") is not None:
        # A seeded sampler restarts its random stream: resumed, it would propose the points of the
        # first run again. Seeded by the history's length, it stays reproducible and moves on.
        study.sampler = build_sampler(sampler_cfg, cell.label, cell.distributions, seed=int(sampler_cfg.seed) + done)
    if name not in records:
        # The journal keeps these in a file: masked as everything bench writes (the fingerprint is already).
        attrs = {
            STUDY_SWEEP: sweep_id,
            STUDY_CELL: cell.label,
            STUDY_VERSION: version,
            STUDY_FINGERPRINT: fingerprint,
            "coordinates": mask_data(cell.coordinates),
            "columns": mask_data(cell.columns),
            "metric": cell.metric,
            "direction": cell.direction,
        }
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        if latest is not None:
            latest.load(storage).set_user_attr(STUDY_SUPERSEDED_BY, name)
            latest.attrs[STUDY_SUPERSEDED_BY] = name
            log.warning(
                "[%s] its experiment changed: new study %s (the old one, %s, is kept)", cell.label, name, latest.name
            )
        records[name] = StudyRecord(name, attrs)
    records[name].study = study
    cell.study_name = name
    return study


def name_metrics(study: optuna.Study, metric: str | list[str] | None) -> None:
    """Name the study's objectives after the cell's metric(s) (val/mIoU, ...), also on a study resumed
    from before bench named them, so optuna-dashboard and Optuna's plots say what each value is, not "Objective 0". A study whose
    objectives the metrics do not match one to one (no metric_key) is left unnamed."""
    import warnings

    names = [metric] if isinstance(metric, str) else list(metric or [])
    if not names or len(names) != len(study.directions) or study.metric_names == names:
        return
    with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
        warnings.simplefilter("ignore")
        study.set_metric_names([str(n) for n in names])


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def mark_interrupted(study: optuna.Study, trial: Trial | FrozenTrial, requeue: bool = True) -> FrozenTrial:
    """Record a trial whose job was stopped or died as FAIL + interrupted and, unless it was only
    being prepared, queue its parameters again so the next run of the sweep re-runs it. It does not
    count against max_failure_rate. `trial` is a live Trial or the FrozenTrial of a RUNNING one."""
    from optuna.trial import Trial, TrialState

    live = trial if isinstance(trial, Trial) else running_trial(study, trial)
    live.set_user_attr(ATTR_INTERRUPTED, True)
    frozen = study.tell(live, state=TrialState.FAIL)
    if requeue:
        kept = {ATTR_SEED: frozen.user_attrs[ATTR_SEED]} if ATTR_SEED in frozen.user_attrs else {}
        study.enqueue_trial(frozen.params, user_attrs={ATTR_REQUEUED_FROM: frozen.number, **kept}, skip_if_exists=False)
    return frozen


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
