"""A sweep over time: one driver at a time, drivers that die or are stopped, and resumes that must
continue the same experiment. Driven through the stub app (tests/stub_app) in subprocesses."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from tests.helpers import output, read_csv, run_stub, running_trial_dir, start_stub, states, studies, wait_for

pytestmark = pytest.mark.duration(30)


def test_a_second_driver_stops_at_once_naming_the_first_which_finishes_its_budget(tmp_path):
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    args = ["task=a", "hydra.sweeper.n_trials=4", "hold_trials=[0]", f"release={release}"]
    first = start_stub(sweep, *args)
    wait_for(lambda: running_trial_dir(sweep), 60, "the first driver's first trial")
    second = run_stub(sweep, *args, timeout=60)
    assert second.returncode != 0
    assert f"is being run by another driver: pid {first.pid} on host {socket.gethostname()}, started" in second.stderr
    release.touch()
    assert first.wait(timeout=120) == 0, output(sweep)
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE"] * 4  # not 5: the second driver ran nothing
    nums = [int(r["job_num"]) for r in read_csv(sweep / "results.csv")]
    assert sorted(nums) == list(range(4))


def test_killed_driver_is_taken_over_its_running_trial_really_interrupted_and_rerun(tmp_path):
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    args = ["task=a,b", "hydra.sweeper.n_trials=4", "hold_trials=[2]", f"release={release}"]
    driver = start_stub(sweep, *args)
    victim_dir = wait_for(
        lambda: (d := running_trial_dir(sweep)) and d.name == "4" and d, 60, "trial 2 of task=a running"
    )
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = {p: p.stat().st_mtime for p in sweep.rglob("*") if p.is_file() and p.name != "results.csv"}

    release.touch()
    result = run_stub(sweep, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"from a driver that is no longer running (pid {driver.pid} on host" in result.stdout + result.stderr
    assert re.search(rf"resuming {re.escape(str(sweep))}: [1-4]/8 done, 1 interrupted trial re-queued", result.stdout)
    found = studies(sweep)
    for study in found.values():
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 4
    (interrupted,) = [r for r in read_csv(sweep / "results.csv") if r["interrupted"] == "True"]
    assert (interrupted["cell"], interrupted["state"], interrupted["job_dir"]) == ("task=a", "INTERRUPTED", "")
    rerun = [t for t in found["task=a"].trials if t.user_attrs.get("requeued_from") == int(interrupted["trial"])]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE"
    assert rerun[0].params["x"] == float(interrupted["x"])  # the same point, run again
    assert not (victim_dir / "timing.json").exists()  # the killed trial never finished there
    # Every file of the first run is still there, untouched; job numbers never collide.
    for path, mtime in before.items():
        assert path.exists(), path
        if path.name not in ("optuna.journal", "best.csv", "driver.lock") and not path.name.startswith("multirun"):
            assert path.stat().st_mtime == mtime, path
    assert (sweep / "multirun.yaml").exists() and (sweep / "multirun.resume1.yaml").exists()
    nums = [int(r["job_num"]) for r in read_csv(sweep / "results.csv") if r["job_num"]]
    assert len(nums) == len(set(nums))


def test_sweeps_sharing_a_storage_never_share_studies(tmp_path):
    storage = f"sqlite:///{tmp_path}/shared.db"
    for name in ("one", "two"):
        result = run_stub(tmp_path / name, "task=a", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}")
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (studies(tmp_path / name, storage=storage)["default"] for name in ("one", "two"))
    assert one.study_name != two.study_name
    assert len(one.trials) == len(two.trials) == 3


@pytest.mark.parametrize(
    "signum, trial_exits", [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)]
)
def test_interrupted_driver_records_its_running_trial_interrupted_and_requeues_it(tmp_path, signum, trial_exits):
    """trial_exits: the trial answers Ctrl-C with sys.exit(1), as Lightning does; still a Ctrl-C."""
    sweep = tmp_path / "sweep"
    driver = start_stub(
        sweep,
        "task=a",
        "hold_trials=[1]",
        f"release={tmp_path / 'never'}",
        "hydra.sweeper.n_trials=3",
        f"exit_on_interrupt={trial_exits}",
    )
    wait_for(lambda: (d := running_trial_dir(sweep)) and d.name == "1", 60, "trial 1 running")
    driver.send_signal(signum)
    assert driver.wait(timeout=60) != 0
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE", "FAIL", "WAITING"]  # interrupted, and queued again for a resume
    assert study.trials[1].user_attrs["interrupted"] is True
    assert study.trials[2].user_attrs["requeued_from"] == 1
    shown = output(sweep)  # the driver's console, not the trial's log file
    assert "[default] trial 1 interrupted" in shown and "rerun the same command with hydra.sweep.dir=" in shown
    assert f"sweep interrupted ({'KeyboardInterrupt' if signum == signal.SIGINT else 'SweepInterrupted'})" in shown


def test_resume_with_a_changed_experiment_stops_naming_each_difference(tmp_path):
    assert run_stub(tmp_path, "task=a", "hydra.sweeper.n_trials=2").returncode == 0
    result = run_stub(
        tmp_path,
        "task=a",
        "hydra.sweeper.n_trials=4",
        "search_space.x='interval(5.0, 6.0)'",
        "task.metric=other",
        "model.scale=3.0",
        "hydra/sweeper/sampler=random",
    )
    assert result.returncode != 0
    for difference in (
        "metric: score -> other",
        "search space x:",
        "model.scale: 1.0 -> 3.0",
        "sampler:",
        "hydra.sweeper.on_change=new_version",
    ):
        assert difference in result.stderr, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    assert len(study.trials) == 2 and not (tmp_path / "2").exists()  # nothing launched
    assert not (tmp_path / "multirun.resume1.yaml").exists()


def test_new_version_for_a_changed_cell_keeps_the_old_study_as_history(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=2").returncode == 0
    result = run_stub(
        tmp_path, "task=a,b", "hydra.sweeper.n_trials=2", "model.scale=3.0", "hydra.sweeper.on_change=new_version"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    every = studies(tmp_path, current_only=False)
    assert len(every) == 4 and sum(name.endswith("/v2") for name in every) == 2
    assert all(len(s.trials) == 2 for s in every.values())
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["study_version"] for r in rows) == ["1"] * 4 + ["2"] * 4
    best = read_csv(tmp_path / "best.csv")
    assert sorted(r["study"].endswith("/v2") for r in best) == [True, True]  # the current versions


def test_unchanged_resume_continues_and_results_keep_cells_it_did_not_name(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=2").returncode == 0
    result = run_stub(tmp_path, "task=a", "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    found = studies(tmp_path)
    assert (len(found["task=a"].trials), len(found["task=b"].trials)) == (3, 2)
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["cell"] for r in rows) == ["task=a"] * 3 + ["task=b"] * 2
    assert sorted(r["cell"] for r in read_csv(tmp_path / "best.csv")) == ["task=a", "task=b"]


def test_a_resumed_seeded_sampler_moves_on_instead_of_repeating_the_first_runs_points(tmp_path):
    assert run_stub(tmp_path, "task=a", "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=3").returncode == 0
    result = run_stub(tmp_path, "task=a", "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=6")
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    xs = [t.params["x"] for t in study.trials]
    assert len(xs) == 6 and len(set(xs)) == 6, xs


def test_a_resume_says_that_it_is_one_with_what_is_done_and_what_runs_again(tmp_path):
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    args = ["task=a", "hold_trials=[1]", f"release={release}", "hydra.sweeper.n_trials=3"]
    driver = start_stub(sweep, *args)
    wait_for(lambda: (d := running_trial_dir(sweep)) and d.name == "1", 60, "trial 1 running")
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) != 0
    assert "resuming" not in output(sweep)  # the first run is no resume
    release.touch()
    result = run_stub(sweep, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {sweep}: 1/3 done, 1 interrupted trial re-queued" in result.stdout + result.stderr
