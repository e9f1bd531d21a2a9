"""MLflow tracking against real MLflow: a SQLite store (written directly by in-process trials, or
behind a local `mlflow server`), and a separate real server for the remote case. The stub app uses
bench's callback like any Hydra app."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bench.tracking.server import LocalTrackingServer
from tests.test_sweeper import STUB, studies

SECRET = "hunter2-do-not-log"


def tracking_args(tmp_path: Path, uri: str | None = None) -> list[str]:
    """Turn on bench's MLflow callback in the stub app: by default the embedded SQLite store."""
    return ["mlflow.enabled=true", f"mlflow.tracking_uri={uri or f'sqlite:///{tmp_path}/mlflow.db'}",
            f"+mlflow.artifact_location={(tmp_path / 'artifacts').as_uri()}"]


def run_tracked_stub(tmp_path: Path, *args: str, uri: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={tmp_path}/sweep", *tracking_args(tmp_path, uri), *args],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def assert_tracked_like_the_local_launcher(client: MlflowClient, experiment: str, sweep_dir: Path, cells: int, trials: int) -> None:
    """One benchmark run, a run per cell, a FINISHED run per trial, and results.csv pointing at them."""
    levels = tree(client, experiment)
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": cells, "trial": trials}
    assert all(r.info.status == "FINISHED" for level in levels.values() for r in level)
    with open(sweep_dir / "results.csv") as f:
        assert {r["mlflow_run_id"] for r in csv.DictReader(f)} == {r.info.run_id for r in levels["trial"]}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """One real `mlflow server` (over SQLite) for the tests that are not about the embedded default:
    each logs to its own experiment on it, as several benchmarks share a team's server."""
    root = tmp_path_factory.mktemp("mlflow_server")
    server = LocalTrackingServer(f"sqlite:///{root}/server.db", (root / "artifacts").as_uri(), root / "server.log")
    url = server.start()
    yield url
    server.stop()


def run_on_server(url: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, MlflowClient, str]:
    """The stub sweep logging to the shared server, in an experiment named after the test's tmp dir."""
    experiment = tmp_path.name
    result = run_tracked_stub(tmp_path, f"mlflow.experiment={experiment}", *args, uri=url)
    return result, MlflowClient(url), experiment


def tree(client: MlflowClient, experiment: str = "stub") -> dict[str, list]:
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    by_level: dict[str, list] = {}
    for run in found:
        by_level.setdefault(run.data.tags.get("bench.level"), []).append(run)
    return by_level


def read_results(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "sweep" / "results.csv") as f:
        return list(csv.DictReader(f))


def test_stub_sweep_builds_the_run_tree_with_configs_and_links(tmp_path):
    result = run_tracked_stub(tmp_path, "task=a,b", "model=x,y", "hydra.sweeper.n_trials=3", "steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    # Trials ran inside the driver (local launcher): the SQLite file was written directly.
    assert not (tmp_path / "sweep" / "mlflow_server.log").exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    levels = tree(client)
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": 4, "trial": 12}
    (benchmark,) = levels["benchmark"]
    cells = {r.info.run_id: r for r in levels["cell"]}
    assert all(r.data.tags["mlflow.parentRunId"] == benchmark.info.run_id for r in cells.values())
    assert all(r.data.tags["mlflow.parentRunId"] in cells for r in levels["trial"])
    for run in [benchmark, *levels["cell"], *levels["trial"]]:
        assert run.info.status == "FINISHED", (run.data.tags, run.info.status)
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.csv", "best.csv", "overrides.yaml", "search_spaces"} <= {a.path for a in client.list_artifacts(benchmark.info.run_id)}
    assert benchmark.data.params["version.optuna"] and benchmark.data.params["version.mlflow"]
    # Both ways: results.csv -> run, run -> cell, trial number, sweep dir.
    rows = read_results(tmp_path)
    trial_runs = {r.info.run_id: r for r in levels["trial"]}
    assert sorted(r["mlflow_run_id"] for r in rows) == sorted(trial_runs)
    for row in rows:
        tags = trial_runs[row["mlflow_run_id"]].data.tags
        assert (tags["bench.cell"], tags["bench.trial"]) == (row["cell"], row["trial"])
        assert tags["bench.sweep_dir"] == str((tmp_path / "sweep").resolve())
        run = trial_runs[row["mlflow_run_id"]]
        assert float(run.data.params["x"]) == float(row["x"])  # sampled hyperparameters as params
        assert len(client.get_metric_history(run.info.run_id, "score")) == 3  # per-step metrics
    for cell in levels["cell"]:
        assert {"metric", "direction", "study_name", "storage"} <= set(cell.data.params)
        assert "best_value" in cell.data.metrics and "best_trial" in cell.data.tags


def test_failed_trial_leaves_a_failed_run_with_its_traceback(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(mlflow_server, tmp_path, "task=a,b", "fail_tasks=[b]", "hydra.sweeper.n_trials=2")
    assert result.returncode != 0  # cell b stopped
    levels = tree(client, experiment)
    failed = [r for r in levels["trial"] if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["bench.cell"] == "task=b"
    error = client.download_artifacts(failed[0].info.run_id, "error.txt", str(tmp_path))
    assert "RuntimeError: stub failure in task b" in Path(error).read_text()
    assert "Traceback" in Path(error).read_text()
    statuses = {r.data.tags["bench.cell"]: r.info.status for r in levels["cell"]}
    assert statuses == {"task=a": "FINISHED", "task=b": "FAILED"}
    assert levels["benchmark"][0].info.status == "FAILED"  # closed although the sweep raised


def test_pruned_trials_are_marked_and_terminated(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(mlflow_server, tmp_path, "hydra/sweeper/pruner=median",
                                               "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.n_trials=8", "steps=5")
    assert result.returncode == 0, result.stderr[-3000:]
    levels = tree(client, experiment)
    pruned = [r for r in levels["trial"] if r.data.tags.get("bench.state") == "PRUNED"]
    assert pruned
    for run in pruned:
        assert run.info.status == "KILLED" and run.data.tags["bench.pruned"] == "true"
    (study,) = studies(tmp_path / "sweep").values()
    assert len(pruned) == sum(t.state.name == "PRUNED" for t in study.trials)


def test_secrets_are_masked_in_every_artifact_and_param(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(mlflow_server, tmp_path, f"+db.password={SECRET}", f"+hf_token={SECRET}",
                                               "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    artifact_files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in artifact_files)
    for path in artifact_files:
        assert SECRET not in path.read_text(errors="ignore"), path
    texts = [p.read_text() for p in artifact_files if p.name in ("config.yaml", "overrides.yaml")]
    assert any("password: '***'" in t or "password: ***" in t for t in texts)
    for level in tree(client, experiment).values():
        for run in level:
            assert SECRET not in str(run.data.params) + str(run.data.tags)


def test_kill_and_resume_leaves_nothing_running_and_deletes_nothing(tmp_path):
    args = [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={tmp_path}/sweep", "mlflow.enabled=true",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"+mlflow.artifact_location={(tmp_path / 'artifacts').as_uri()}",
            "task=a,b", "sleep=0.5", "hydra.sweeper.n_trials=4", "+mlflow.serve=true"]
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "sweep").glob("*/timing.json"))) < 3:
        time.sleep(0.05)
    time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    before = {r.info.run_id for level in tree(client).values() for r in level}
    artifacts_before = {p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}
    assert before and (tmp_path / "sweep" / "mlflow_server.log").exists()

    result = run_tracked_stub(tmp_path, "task=a,b", "sleep=0.5", "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr[-3000:]
    levels = tree(client)
    after = {r.info.run_id for level in levels.values() for r in level}
    assert before <= after  # nothing deleted
    assert artifacts_before <= {p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}
    assert len(levels["benchmark"]) == 1 and len(levels["cell"]) == 2  # reused, not duplicated
    assert not [r for level in levels.values() for r in level if r.info.status == "RUNNING"]
    ids = {row["mlflow_run_id"] for row in read_results(tmp_path)}
    assert ids == {r.info.run_id for r in levels["trial"]}
    # The server of the killed driver stopped with it (its watchdog saw the pipe close).
    assert not _processes_mentioning(f"{tmp_path}/mlflow.db")


def _processes_mentioning(text: str, grace_s: float = 20.0) -> list[str]:
    deadline = time.time() + grace_s
    while True:
        lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
        found = [line for line in lines if text in line and not line.startswith("ps ")]
        if not found or time.time() > deadline:
            return found
        time.sleep(0.5)


def test_remote_tracking_server(mlflow_server, tmp_path):
    """mlflow.tracking_uri=http://...: no local store, no local server, everything on the remote one."""
    result, client, experiment = run_on_server(mlflow_server, tmp_path, "task=a,b", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    levels = tree(client, experiment)
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": 2, "trial": 4}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweep" / "mlflow_server.log").exists()


CONCURRENT_LOGGER = """
import sys, mlflow
uri, run_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = mlflow.MlflowClient(uri)
for step in range(steps):
    for name in ("train/loss", "val/loss", "val/mIoU"):
        client.log_metric(run_id, name, step * 0.01 + len(name), step=step)
"""


def test_eight_concurrent_trials_lose_no_metric_point(mlflow_server):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("concurrency")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(8)]
    steps = 40
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_LOGGER, mlflow_server, run_id, str(steps)],
                              stderr=subprocess.PIPE, text=True) for run_id in run_ids]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    for run_id in run_ids:
        for name in ("train/loss", "val/loss", "val/mIoU"):
            history = client.get_metric_history(run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), (run_id, name)
