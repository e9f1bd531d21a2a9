"""Warm starts: a cell's new study first tries configurations that did well on related cells.

    warm_start=siblings   the other cells of this sweep that differ from the cell only in
                          `sibling_key` (bench: the same model on other tasks; every other cell when
                          the key is null)
    warm_start=<dir>      the cells of an earlier sweep that match the cell the same way, the same
                          cell included

From each source cell its best COMPLETE tuning trials (validation values: repeats, and so test
metrics, never feed this), taken in turn from each source, best first, up to warm_start_top_k
distinct configurations; only the params the new cell searches, and only values inside its search
space. Each is enqueued with the cell and trial it came from (user attribute warm_start_from).

With siblings, a cell that has not started waits while one of its siblings is tuning, as long as
other cells can use the slots: it then starts with what the sibling found.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import SweepConfigError
from ._objectives import front, study_is_multi

if TYPE_CHECKING:
    from ._loop_state import CellRun

ATTR_WARM_START_FROM = "warm_start_from"
SIBLINGS = "siblings"


def group(coordinates: dict[str, Any], sibling_key: str | None) -> tuple[tuple[str, str], ...]:
    """What siblings share: every coordinate but the sibling key (nothing, when it is null)."""
    if sibling_key is None:
        return ()
    return tuple(sorted((k, str(v)) for k, v in coordinates.items() if k != sibling_key))


def check_source(warm_start: str | None) -> None:
    if warm_start in (None, SIBLINGS):
        return
    from ._integrity import read_identity

    if not read_identity(Path(warm_start)):  # a damaged sweep.json is named
        raise SweepConfigError(
            f"hydra.sweeper.warm_start={warm_start!r}: use 'siblings', or the directory of an "
            "earlier sweep (one with a sweep.json); no sweep was found there"
        )


def fits(distribution: Any, value: Any) -> bool:
    """The value is one the distribution can produce (Optuna would use an out-of-range enqueued
    value anyway, with only a warning)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    try:
        return bool(distribution.low <= value <= distribution.high)
    except TypeError:
        return False


class WarmStart:
    def __init__(self, mode: str, top_k: int, sibling_key: str | None, storage: Any, sampler_cfg: Any = None) -> None:
        self.mode, self.top_k, self.sibling_key, self.sampler_cfg = mode, top_k, sibling_key, sampler_cfg
        self.earlier: list[tuple[dict[str, Any], Any]] = []  # (coordinates, study) of an earlier sweep's cells
        if mode != SIBLINGS:
            self.earlier = _earlier_studies(Path(mode), storage)
        self.runs: list[CellRun] = []  # the loop's runs (set by the caller)

    def _sources(self, run: CellRun) -> list[tuple[str, Any]]:
        mine = group(run.cell.coordinates, self.sibling_key)
        if self.mode == SIBLINGS:
            siblings = [
                r
                for r in self.runs
                if r.phase == run.phase and r is not run and group(r.cell.coordinates, self.sibling_key) == mine
            ]
            siblings.sort(key=lambda r: (not r.tuning_done, -r.done))  # finished siblings first
            return [(r.cell.label, r.study) for r in siblings]
        matching = [
            (study.user_attrs.get("cell", study.study_name), study)
            for coordinates, study in self.earlier
            if group(coordinates, self.sibling_key) == mine
        ]
        return sorted(matching, key=lambda source: source[0] != run.cell.label)  # the same cell first

    def seed(self, run: CellRun) -> int:
        """Enqueue the configurations into the cell's new study; how many."""
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        ranked = []
        for label, study in self._sources(run):
            if study_is_multi(study):  # no single ranking: its Pareto front
                ranked.append([(label, t) for t in front(study)])
                continue
            complete = [
                t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None
            ]
            complete.sort(key=lambda t: t.value, reverse=study.direction == StudyDirection.MAXIMIZE)
            ranked.append([(label, t) for t in complete])
        seen, enqueued = set(), 0
        for label, trial in (pair for layer in itertools.zip_longest(*ranked) for pair in layer if pair):
            params = {
                k: v
                for k, v in trial.params.items()
                if k in run.cell.distributions and fits(run.cell.distributions[k], v)
            }
            key = tuple(sorted(params.items()))
            if not params or key in seen:
                continue
            seen.add(key)
            run.study.enqueue_trial(
                params, user_attrs={ATTR_WARM_START_FROM: f"{label} #{trial.number}"}, skip_if_exists=False
            )
            enqueued += 1
            if enqueued >= self.top_k:
                break
        self._keep_random_startup(run, enqueued)
        return enqueued

    def _keep_random_startup(self, run: CellRun, enqueued: int) -> None:
        """The warm-start trials come on top of the sampler's random start-up: counted in it, they
        would replace it, and a model fit to a few clustered good points looks everywhere else
        (TPE's mean best fell from 0.98 to 0.955 in benchmarks/warm_start.py)."""
        from ._samplers import build_sampler

        startup = self.sampler_cfg.get("n_startup_trials") if self.sampler_cfg else None
        if enqueued and isinstance(startup, int):
            run.study.sampler = build_sampler(
                self.sampler_cfg, run.cell.label, run.cell.distributions, n_startup_trials=startup + enqueued
            )

    def defer(self, run: CellRun, runs: list[CellRun]) -> bool:
        """A cell not started yet waits while a sibling of it is tuning (siblings mode)."""
        if self.mode != SIBLINGS or run.in_flight or run.done or run.failed:
            return False
        mine = group(run.cell.coordinates, self.sibling_key)
        return any(
            r is not run
            and r.phase == run.phase
            and (r.in_flight or r.done)
            and not r.tuning_done
            and group(r.cell.coordinates, self.sibling_key) == mine
            for r in runs
        )


def _earlier_studies(sweep_dir: Path, storage: Any) -> list[tuple[dict[str, Any], Any]]:
    """The current tuning studies of an earlier sweep: from its own journal file when it has one,
    else from this sweep's storage (a shared database)."""
    import optuna

    from ._integrity import read_identity
    from ._studies import JOURNAL_NAME, open_storage, sweep_studies

    sweep_id = read_identity(sweep_dir)["sweep_id"]
    journal = sweep_dir / JOURNAL_NAME
    source = open_storage(str(journal)) if journal.is_file() else storage
    records = [r for r in sweep_studies(source, sweep_id).values() if r.current]
    if not records:
        raise SweepConfigError(
            f"hydra.sweeper.warm_start={str(sweep_dir)!r}: that sweep has no studies to start from "
            "(it never ran a trial, or used another storage: set hydra.sweeper.storage to it)"
        )
    return [(r.attrs.get("coordinates") or {}, optuna.load_study(study_name=r.name, storage=source)) for r in records]
