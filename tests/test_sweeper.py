"""The bench sweeper, driven through a tiny non-torch Hydra app (tests/stub_app) in subprocesses."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from hydra_plugins.bench_sweeper._studies import open_storage

STUB = Path(__file__).parent / "stub_app" / "stub_app.py"


def run_stub(sweep_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def studies(sweep_dir: Path) -> dict[str, optuna.Study]:
    storage = open_storage(str(sweep_dir / "optuna.journal"))
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)}


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


def test_two_tasks_by_two_models_give_four_studies_of_n_trials(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "model=x,y", "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr[-3000:]
    found = studies(tmp_path)
    assert sorted(found) == [f"bench[task={t},model={m}]" for t in "ab" for m in "xy"]
    for study in found.values():
        assert states(study) == ["COMPLETE"] * 4
    rows = read_csv(tmp_path / "results.csv")
    assert len(rows) == 16
    assert {(r["task"], r["model"]) for r in rows} == {(t, m) for t in "ab" for m in "xy"}
    assert {"cell", "trial", "state", "value", "duration_s", "job_dir", "mlflow_run_id", "x", "y"} <= set(rows[0])
    # Every trial ran in its own Hydra job directory, numbered without collisions.
    assert sorted(int(r["job_num"]) for r in rows) == list(range(16))
    assert all(Path(r["job_dir"]).is_dir() for r in rows)
    best = read_csv(tmp_path / "best.csv")
    assert len(best) == 4 and "Best per cell" in result.stdout


def test_metric_and_direction_come_from_each_cell(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=3").returncode == 0
    found = studies(tmp_path)
    assert found["bench[task=a]"].direction == optuna.study.StudyDirection.MINIMIZE
    assert found["bench[task=b]"].direction == optuna.study.StudyDirection.MAXIMIZE
    best = {r["cell"]: r for r in read_csv(tmp_path / "best.csv")}
    assert best["task=a"]["direction"] == "minimize" and best["task=b"]["direction"] == "maximize"
    a_values = [t.value for t in found["bench[task=a]"].trials]
    assert float(best["task=a"]["best_value"]) == min(a_values)


def test_cells_interleave_and_trials_get_their_own_parameters(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=3").returncode == 0
    rows = sorted(read_csv(tmp_path / "results.csv"), key=lambda r: int(r["job_num"]))
    # Least-done cell first: a, b, a, b, ... rather than all of a then all of b.
    assert [r["task"] for r in rows] == ["a", "b", "a", "b", "a", "b"]
    for r in rows:
        config = (Path(r["job_dir"]) / ".hydra" / "config.yaml").read_text()
        assert f"x: {r['x']}" in config
        assert "study: bench[task=" in config  # the trial node reached the job


def test_hydra_optuna_sweeper_example_works_after_switching_sweeper(tmp_path):
    """hydra-optuna-sweeper's sphere example: same keys, grammar and app, `bench` as the sweeper."""
    result = subprocess.run(
        [sys.executable, str(STUB.parent / "sphere.py"), "-m", f"hydra.sweep.dir={tmp_path}",
         f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db", "z=tag(log, interval(0.1, 10))"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="sphere[default]", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # from hydra.sweeper.direction
    assert len(study.trials) == 20
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        assert t.params["x"] in [-5.5 + 0.5 * i for i in range(22)]  # range(-5.5, 5.5, step=0.5)
        assert t.params["y"] in (-5, 0, 5)
        assert t.value == t.params["x"] ** 2 + t.params["y"] ** 2
        z = t.distributions["z"]  # command-line search sweeps join the space
        assert isinstance(z, optuna.distributions.FloatDistribution) and z.log and (z.low, z.high) == (0.1, 10)
    assert min(t.value for t in study.trials) <= 1.0  # TPE found the neighbourhood of the optimum


def test_aggressive_pruner_prunes_and_keeps_the_last_value(tmp_path):
    result = run_stub(
        tmp_path, "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0", "hydra.sweeper.n_trials=8", "steps=5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states(study)
    assert len(study.trials) == 8  # pruned trials count towards n_trials
    for t in pruned:
        assert t.value == t.intermediate_values[max(t.intermediate_values)]  # the last reported value
    assert {r["state"] for r in read_csv(tmp_path / "results.csv")} >= {"PRUNED"}


def test_a_raising_trial_is_failed_with_its_error_and_other_cells_finish(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "fail_tasks=[b]", "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=0.0")
    assert result.returncode != 0
    assert "cells stopped before their budget: task=b" in result.stderr
    found = studies(tmp_path)
    assert states(found["bench[task=a]"]) == ["COMPLETE"] * 3
    assert states(found["bench[task=b]"]) == ["FAIL"]  # rate 0: the first failure stops the cell
    (failed,) = [r for r in read_csv(tmp_path / "results.csv") if r["state"] == "FAIL"]
    assert "RuntimeError: stub failure in task b" in failed["error"]


def test_max_failure_rate_allows_that_many_failures_per_cell(tmp_path):
    # 0.5 x 4 trials: two failures are tolerated, the third stops the cell.
    result = run_stub(tmp_path, "task=b", "fail=true", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.5")
    assert result.returncode != 0
    (study,) = studies(tmp_path).values()
    assert states(study) == ["FAIL"] * 3
    assert "3 failed trials exceed max_failure_rate=0.5 x n_trials=4" in result.stderr


def test_failures_within_the_rate_are_replaced_so_the_budget_is_met(tmp_path):
    # x > 0.5 fails; the cell still ends with exactly n_trials finished trials.
    result = run_stub(tmp_path, "task=a", "hydra.sweeper.n_trials=5", "hydra.sweeper.max_failure_rate=1.0", "fail_above=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    assert states(study).count("COMPLETE") == 5
    assert states(study).count("FAIL") >= 1


def test_killed_driver_resumes_with_exact_counts_and_nothing_deleted(tmp_path):
    args = [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={tmp_path}", "task=a,b", "sleep=0.4", "hydra.sweeper.n_trials=5"]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once a few trials are done and one is running
        done = len(list(tmp_path.glob("*/timing.json")))
        if done >= 4:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = {p: p.stat().st_mtime for p in tmp_path.rglob("*") if p.is_file() and p.name != "results.csv"}
    assert before

    result = run_stub(tmp_path, "task=a,b", "sleep=0.4", "hydra.sweeper.n_trials=5")
    assert result.returncode == 0, result.stderr[-3000:]
    for study in studies(tmp_path).values():
        finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(finished) == 5
    interrupted = [r for r in read_csv(tmp_path / "results.csv") if r["interrupted"] == "True"]
    for row in interrupted:
        assert row["state"] == "FAIL"
    # Every file of the first run is still there, untouched; job numbers never collide.
    for path, mtime in before.items():
        assert path.exists(), path
        if path.name not in ("optuna.journal", "best.csv") and not path.name.startswith("multirun"):
            assert path.stat().st_mtime == mtime, path
    assert (tmp_path / "multirun.yaml").exists() and (tmp_path / "multirun.resume1.yaml").exists()
    nums = [int(r["job_num"]) for r in read_csv(tmp_path / "results.csv")]
    assert len(nums) == len(set(nums))


def test_malformed_search_space_fails_before_launching(tmp_path):
    # Quoted: a string in the search-space config, as a search_space/*.yaml file would hold it.
    result = run_stub(tmp_path, "search_space.x='interval(1.0)'")
    assert result.returncode != 0
    assert "search space entry 'x=interval(1.0)' is malformed" in result.stderr
    assert not list(tmp_path.glob("*/timing.json"))
    assert not (tmp_path / "optuna.journal").exists()


def test_bad_direction_fails_before_launching(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "task.direction=up")
    assert result.returncode != 0
    assert "task.direction='up' is not one of ['minimize', 'maximize']" in result.stderr
    assert not list(tmp_path.glob("*/timing.json"))


def test_dry_run_launches_nothing(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "model=x,y", "hydra.sweeper.dry_run=true", "hydra.sweeper.n_trials=7")
    assert result.returncode == 0, result.stderr
    assert "4 cell(s) x 7 trials = 28 trials" in result.stdout
    assert "cell task=b,model=y: maximize score" in result.stdout
    assert "x: interval(-1.0, 1.0)  [FloatDistribution]" in result.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_async_launcher_keeps_slots_busy_without_a_batch_barrier(tmp_path):
    """submitit's local executor runs real processes. Trial 0 is slow: while it runs, the other
    slot must go on taking trials instead of waiting for it (as a batch barrier would)."""
    result = run_stub(
        tmp_path, "hydra/launcher=submitit_local", f"hydra.launcher.submitit_folder={tmp_path}/.submitit",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=6", "sleep=0.3", "slow_trials=[0]", "slow_factor=30",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    timings = {int(p.parent.name): json.loads(p.read_text()) for p in tmp_path.glob("*/timing.json")}
    assert len(timings) == 6
    assert len({t["pid"] for t in timings.values()}) == 6  # each trial in its own process
    slow = timings[0]
    inside = [n for n, t in timings.items() if n != 0 and slow["start"] < t["start"] and t["end"] < slow["end"]]
    assert len(inside) >= 2, timings  # whole trials started and finished while trial 0 ran
