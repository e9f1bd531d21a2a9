"""What keeps the driver's per-trial cost flat as a sweep grows (benchmarks/driver_scale.py measures
it): the tables are rewritten only as often as a fixed share of the driver's time allows, and the
work done per trial's end does not copy every trial of the storage."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import InMemoryStorage

from hydra_plugins.bench_sweeper._results import Throttled
from hydra_plugins.bench_sweeper._studies import STUDY_PHASE, STUDY_SWEEP, sweep_studies
from tests.test_dispatch_loop import ScriptedDispatcher, make_loop, make_runs

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CountingStorage(InMemoryStorage):
    """An in-memory storage that counts each trial read: full deep copies apart, and every trial
    handed out (the O(n) part of a read)."""

    def __init__(self) -> None:
        super().__init__()
        self.deep_copies = 0
        self.trials_read = 0

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[Any]:
        trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        self.deep_copies += bool(deepcopy)
        self.trials_read += len(trials)
        return trials


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_throttled_rewrite_runs_at_once_then_waits_until_it_has_paid_for_itself() -> None:
    clock = FakeClock()
    written: list[float] = []

    def write() -> None:
        written.append(clock.now)
        clock.now += 1.0  # a rewrite that takes 1 s

    throttled = Throttled(write, share=0.05, clock=clock)
    throttled()  # the first always writes
    assert written == [0.0]
    for now in (2.0, 10.0, 19.9):  # less than 1 s / 0.05 = 20 s after the last began: skipped
        clock.now = now
        throttled()
    assert written == [0.0]
    clock.now = 20.0
    throttled()
    assert written == [0.0, 20.0]
    assert throttled.writes == 2


def test_listing_a_sweeps_studies_reads_no_trial() -> None:
    storage = CountingStorage()
    for name, sweep in (("a", "s1"), ("b", "s1"), ("c", "other")):
        study = optuna.create_study(study_name=name, storage=storage)
        study.set_user_attr(STUDY_SWEEP, sweep)
        study.set_user_attr(STUDY_PHASE, "tune")
        for _ in range(20):
            study.tell(study.ask(), 1.0)
    storage.trials_read = storage.deep_copies = 0

    assert sorted(sweep_studies(storage, "s1")) == ["a", "b"]

    assert storage.trials_read == 0 and storage.deep_copies == 0


def _trials_read_per_trial(trials_per_cell: int) -> float:
    storage = CountingStorage()
    runs = make_runs(storage, ["m1", "m2"], target=trials_per_cell)
    dispatcher = ScriptedDispatcher(lambda job: job.x)
    loop = make_loop(runs, dispatcher, slots=2)
    storage.trials_read = storage.deep_copies = 0
    loop.run()
    assert sum(run.complete for run in runs) == 2 * trials_per_cell
    assert storage.deep_copies == 0  # nothing per event copies a study's trials
    return storage.trials_read / (2 * trials_per_cell)


def test_the_loop_reads_no_more_trials_per_trial_as_the_sweep_grows() -> None:
    small, large = _trials_read_per_trial(10), _trials_read_per_trial(80)
    # A scan of every trial per event would read ~8x as many per trial in the larger sweep.
    assert large <= small * 1.5 + 1, (small, large)


def test_a_process_replays_a_journal_once_and_reads_only_what_others_append(tmp_path):
    """open_storage keeps one JournalStorage per journal in a process (a new one replays the whole file:
    the cost of every trial's start on Ray, growing with the sweep): the same path gives the same storage,
    which still sees what another writer appended; a replaced or cut file gets a new one."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hydra_plugins.bench_sweeper._studies import open_storage

    journal = str(tmp_path / "optuna.journal")
    first = open_storage(journal)
    optuna.create_study(study_name="a", storage=first)
    assert open_storage(journal) is first
    other = JournalStorage(JournalFileBackend(journal))  # another process's writer, in effect
    optuna.create_study(study_name="b", storage=other).enqueue_trial({"x": 1})
    assert sorted(s.study_name for s in open_storage(journal).get_all_studies()) == ["a", "b"]

    (tmp_path / "optuna.journal").rename(tmp_path / "old.journal")  # replaced: another file at the path
    fresh = open_storage(journal)
    assert fresh is not first and fresh.get_all_studies() == []
    optuna.create_study(study_name="c", storage=fresh)
    with open(journal, "r+") as f:  # cut, as a repair of a torn last record does
        f.truncate(1)
    assert open_storage(journal) is not fresh


def test_a_process_keeps_only_a_few_journals(tmp_path):
    """A storage holds every trial of its journal in memory: a process that runs many sweeps (a test
    worker, a notebook) keeps the most recently used few, not all of them."""
    from hydra_plugins.bench_sweeper._studies import open_storage

    first = open_storage(str(tmp_path / "first.journal"))
    for i in range(3):
        open_storage(str(tmp_path / f"other{i}.journal"))
    assert open_storage(str(tmp_path / "first.journal")) is not first
