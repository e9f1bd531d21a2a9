"""MLflow tracking against real MLflow: a SQLite store (written directly by in-process trials, or
behind bench's authenticated `mlflow server`), and a separate real server for the remote case. The
stub app uses bench's callbacks like any Hydra app."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bench.tracking.server import LocalTrackingServer
from tests.helpers import (
    PLANTED,
    PLANTED_ENV,
    find_secrets,
    output,
    planted_overrides,
    read_results,
    received_real_values,
    run_tracked_stub,
    running_trial_dir,
    start_stub,
    studies,
    tracking_args,
    tree,
    wait_for,
)

pytestmark = pytest.mark.duration(110)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """One real, authenticated `mlflow server` (over SQLite) for the tests that are not about the
    embedded default: each logs to its own experiment on it, as several benchmarks share a team's
    server. Yields (tracking URI with its credentials, server, its directory)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    server = LocalTrackingServer(f"sqlite:///{root}/server.db", (root / "artifacts").as_uri(), root / "server.log")
    uri = server.start()
    yield uri, server, root
    server.stop()


def run_on_server(server, tmp_path: Path, *args: str, env: dict | None = None):
    """The stub sweep logging to the shared server, in an experiment named after the test's tmp dir."""
    uri = server[0]
    result = run_tracked_stub(tmp_path, f"mlflow.experiment={tmp_path.name}", *args, uri=uri, env=env)
    return result, MlflowClient(uri), tmp_path.name


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
    assert {"results.csv", "best.csv", "overrides.yaml", "search_spaces"} <= {
        a.path for a in client.list_artifacts(benchmark.info.run_id)
    }
    assert benchmark.data.params["version.optuna"] and benchmark.data.params["version.mlflow"]
    # Both ways: results.csv -> run, run -> cell, trial number, sweep dir.
    rows = read_results(tmp_path)
    trial_runs = {r.info.run_id: r for r in levels["trial"]}
    assert sorted(r["mlflow_run_id"] for r in rows) == sorted(trial_runs)
    for row in rows:
        tags = trial_runs[row["mlflow_run_id"]].data.tags
        assert (tags["bench.cell"], tags["bench.trial"], tags["bench.study"]) == (
            row["cell"],
            row["trial"],
            row["study"],
        )
        assert tags["bench.sweep_dir"] == str((tmp_path / "sweep").resolve())
        run = trial_runs[row["mlflow_run_id"]]
        assert float(run.data.params["x"]) == float(row["x"])  # sampled hyperparameters as params
        assert len(client.get_metric_history(run.info.run_id, "score")) == 3  # per-step metrics
    for cell in levels["cell"]:
        assert {"metric", "direction", "study_name", "storage"} <= set(cell.data.params)
        assert "best_value" in cell.data.metrics and "best_trial" in cell.data.tags
    # What each trial cost, and the totals of its cell run and of the benchmark run.
    for row in rows:
        assert trial_runs[row["mlflow_run_id"]].data.metrics["cpu_hours"] == pytest.approx(float(row["cpu_hours"]))
        # No GPU granted on this machine: logged as 0, not left out.
        assert trial_runs[row["mlflow_run_id"]].data.metrics["gpu_hours"] == float(row["gpu_hours"]) == 0.0
    for cell in levels["cell"]:
        mine = [float(r["cpu_hours"]) for r in rows if r["cell"] == cell.data.tags["bench.cell"]]
        assert cell.data.metrics["cpu_hours"] == pytest.approx(sum(mine)) and sum(mine) > 0
    assert benchmark.data.metrics["cpu_hours"] == pytest.approx(sum(float(r["cpu_hours"]) for r in rows))
    assert all(run.data.metrics["gpu_hours"] == 0.0 for run in [benchmark, *levels["cell"]])


def test_failed_trial_leaves_a_failed_run_with_its_traceback(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(
        mlflow_server, tmp_path, "task=a,b", "fail_tasks=[b]", "hydra.sweeper.n_trials=2"
    )
    assert result.returncode != 0  # cell b stopped
    levels = tree(client, experiment)
    failed = [r for r in levels["trial"] if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["bench.cell"] == "task=b"
    error = Path(client.download_artifacts(failed[0].info.run_id, "error.txt", str(tmp_path))).read_text()
    assert "RuntimeError: stub failure in task b" in error and "Traceback" in error
    statuses = {r.data.tags["bench.cell"]: r.info.status for r in levels["cell"]}
    assert statuses == {"task=a": "FINISHED", "task=b": "FAILED"}
    assert levels["benchmark"][0].info.status == "FAILED"  # closed although the sweep raised


def test_pruned_trials_are_marked_and_terminated(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(
        mlflow_server,
        tmp_path,
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.n_trials=8",
        "steps=5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pruned = [r for r in tree(client, experiment)["trial"] if r.data.tags.get("bench.state") == "PRUNED"]
    assert pruned
    for run in pruned:
        assert run.info.status == "KILLED" and run.data.tags["bench.pruned"] == "true"
    (study,) = studies(tmp_path / "sweep").values()
    assert len(pruned) == sum(t.state.name == "PRUNED" for t in study.trials)


def test_no_planted_secret_reaches_disk_logs_or_mlflow(mlflow_server, tmp_path):
    """A secret in every position (a secret-named key, a URL password, a list item, an ${oc.env:}
    value, the tracking URI's credentials, a traceback) and two trials on the local launcher: none
    is anywhere on disk, in MLflow (database and artifacts) or on the console; the jobs got them."""
    uri, server, server_root = mlflow_server
    result, _, _ = run_on_server(
        mlflow_server,
        tmp_path,
        "task=a,b",
        "fail_tasks=[b]",
        "hydra.sweeper.n_trials=1",
        *planted_overrides(),
        env=PLANTED_ENV,
    )
    assert "cells stopped before their budget: task=b" in result.stderr  # b's trial failed, as planted
    assert received_real_values(tmp_path / "sweep")
    secrets = [*PLANTED.values(), server.password]
    found = find_secrets(secrets, [tmp_path, server_root], {"stdout": result.stdout, "stderr": result.stderr})
    assert not found, found
    # What is masked is still there, as ***: the config and the traceback keep their shape.
    config = (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").read_text()
    assert "db_password: '***'" in config and "postgresql://user:***@db.example/x" in config
    assert "RuntimeError: stub failure in task b (*** ***)" in result.stdout + result.stderr


def test_a_driver_killed_mid_trial_then_resumed_leaves_nothing_running_and_deletes_nothing(tmp_path):
    args = [
        *tracking_args(tmp_path),
        "task=a,b",
        "hydra.sweeper.n_trials=4",
        "+mlflow.serve=true",
        "hold_trials=[1]",
        f"release={tmp_path / 'release'}",
    ]
    driver = start_stub(tmp_path / "sweep", *args, cwd=tmp_path)
    wait_for(lambda: running_trial_dir(tmp_path / "sweep"), 120, "a trial to be running")
    assert _serving(f"{tmp_path}/mlflow.db"), "the sweep's server is not running: the check at the end could not fail"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    before = {r.info.run_id: r for level in tree(client).values() for r in level}
    assert [r for r in before.values() if r.info.status == "RUNNING" and r.data.tags["bench.level"] == "trial"]
    artifacts_before = {p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}

    (tmp_path / "release").touch()
    result = run_tracked_stub(tmp_path, *args[3:])
    assert result.returncode == 0, result.stderr[-3000:]
    levels = tree(client)
    after = {r.info.run_id: r for level in levels.values() for r in level}
    assert set(before) <= set(after)  # nothing deleted
    assert artifacts_before <= {p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}
    assert len(levels["benchmark"]) == 1 and len(levels["cell"]) == 2  # reused, not duplicated
    assert not [r for r in after.values() if r.info.status == "RUNNING"]
    (killed,) = [r for r in levels["trial"] if r.data.tags.get("bench.state") == "INTERRUPTED"]
    assert killed.info.status == "KILLED" and killed.info.run_id in before
    assert {row["mlflow_run_id"] for row in read_results(tmp_path)} == {r.info.run_id for r in levels["trial"]}
    # The server of the killed driver stopped with it (its watchdog saw the pipe close).
    assert not _still_serving(f"{tmp_path}/mlflow.db")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_driver_closes_its_in_process_trial_run_as_killed(tmp_path, signum):
    driver = start_stub(
        tmp_path / "sweep",
        *tracking_args(tmp_path),
        "task=a",
        "hydra.sweeper.n_trials=3",
        "hold_trials=[1]",
        f"release={tmp_path / 'never'}",
        "steps=2",
        cwd=tmp_path,
    )
    wait_for(lambda: (d := running_trial_dir(tmp_path / "sweep")) and d.name == "1", 120, "trial 1 running")
    driver.send_signal(signum)
    assert driver.wait(timeout=120) != 0
    levels = tree(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    states = sorted((r.data.tags.get("bench.state"), r.info.status) for r in levels["trial"])
    assert states == [("COMPLETE", "FINISHED"), ("INTERRUPTED", "KILLED")], output(tmp_path / "sweep")
    assert [r.info.status for r in levels["cell"] + levels["benchmark"]] == ["KILLED", "KILLED"]


def test_the_best_value_of_a_resumed_cell_never_gets_worse(mlflow_server, tmp_path):
    result, client, experiment = run_on_server(mlflow_server, tmp_path, "task=a", "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    (cell,) = tree(client, experiment)["cell"]
    best_before = cell.data.metrics["best_value"]
    result, _, _ = run_on_server(mlflow_server, tmp_path, "task=a", "hydra.sweeper.n_trials=6")
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert any(t.value > best_before for t in study.trials[3:])  # the resumed trials include worse ones
    history = [m.value for m in sorted(client.get_metric_history(cell.info.run_id, "best_value"), key=lambda m: m.step)]
    assert history == sorted(history, reverse=True)  # minimised: only ever improves
    assert history[-1] == min(t.value for t in study.trials)


def test_a_server_that_stops_mid_sweep_is_reported_at_once_and_no_trial_starts_after_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        *tracking_args(tmp_path),
        "task=a",
        "hydra.sweeper.n_trials=3",
        "+mlflow.serve=true",
        "hold_trials=[0]",
        f"release={tmp_path / 'release'}",
    ]
    # No HTTP retries: the held trial's last log calls fail at once instead of after minutes.
    driver = start_stub(sweep, *args, cwd=tmp_path, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    wait_for(lambda: running_trial_dir(sweep), 120, "trial 0 to be running")
    (watchdog,) = [pid for pid, args in _serving(f"{tmp_path}/mlflow.db") if "bench.tracking.server" in args]
    os.killpg(watchdog, signal.SIGKILL)  # the server's whole group, by its leader's PID
    # Said while the trial is still running, not when the next one would start.
    wait_for(lambda: "MLflow server of this sweep" in output(sweep), 30, "the driver to say the server stopped")
    assert running_trial_dir(sweep) is not None
    (tmp_path / "release").touch()
    assert driver.wait(timeout=120) != 0
    console = output(sweep)
    assert "stopped (exit code -9)" in console and "no new trial starts" in console
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0"]  # nothing started after it


def _serving(db: str) -> list[tuple[int, str]]:
    """(PID, command line) of each process serving the store `db`: bench's server gets the store's URL in
    its environment (a database URL's password would show in `ps`), and its children inherit it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if any(e.startswith(b"MLFLOW_BACKEND_STORE_URI=") and db.encode() in e for e in environ):
            found.append((int(proc.name), args))
    return found


def _still_serving(db: str, grace_s: float = 20.0) -> list[tuple[int, str]]:
    try:
        wait_for(lambda: not _serving(db), grace_s, "the store's server to exit", interval_s=0.5)
    except AssertionError:
        pass
    return _serving(db)


def test_remote_tracking_server(mlflow_server, tmp_path):
    """mlflow.tracking_uri=http://...: no local store, no local server, everything on the remote one."""
    result, client, experiment = run_on_server(mlflow_server, tmp_path, "task=a,b", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    levels = tree(client, experiment)
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": 2, "trial": 4}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweep" / "mlflow_server.log").exists()


# ---- the served store ---------------------------------------------------------------------------
def _search(url: str, credentials: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 5}', headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_served_store_refuses_requests_without_the_sweeps_credentials(mlflow_server):
    uri, server, _ = mlflow_server
    assert _search(server.url) == 401  # any local user, no credentials
    assert _search(server.url, "bench:wrong-password") == 401
    assert _search(server.url, f"bench:{server.password}") == 200
    client = MlflowClient(uri)  # the credentials the trials get
    assert client.get_experiment_by_name("Default") is not None


def test_a_server_that_cannot_start_is_reported_at_once(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalTrackingServer(
            f"sqlite:///{tmp_path}/m.db", (tmp_path / "a").as_uri(), tmp_path / "log", port=port
        )
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"stopped before answering on http://127.0.0.1:\d+ \(exit code") as info:
            server.start()
    assert time.monotonic() - started < 60  # not the 120 s health-check timeout
    assert "address already in use" in str(info.value).lower()


def test_the_fallback_kill_reaches_the_server_not_only_its_watchdog(tmp_path):
    server = LocalTrackingServer(f"sqlite:///{tmp_path}/m.db", (tmp_path / "a").as_uri(), tmp_path / "log")
    server.start()
    group = server.process.pid
    os.kill(group, signal.SIGSTOP)  # a watchdog that no longer reacts to the closed pipe
    server.stop(grace_s=1)

    def alive_in_group() -> list[str]:
        ps = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(group)], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if line.split()[1:2] != ["Z"]]

    wait_for(lambda: not alive_in_group(), 10, "every process of the server's group to be gone")
    with pytest.raises(OSError):  # nothing answers any more
        urllib.request.urlopen(f"{server.url}/health", timeout=5)


def test_a_server_whose_driver_died_leaves_no_auth_store_behind(tmp_path):
    server = LocalTrackingServer(f"sqlite:///{tmp_path}/m.db", (tmp_path / "a").as_uri(), tmp_path / "log")
    server.start()
    private = Path(server._private)
    assert (private / "auth.db").exists()
    server.process.stdin.close()  # what the driver's death does; its own stop() and clean-up never run
    server.process.wait(timeout=60)
    assert not private.exists()


CONCURRENT_LOGGER = """
import sys, mlflow
uri, run_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = mlflow.MlflowClient(uri)
for step in range(steps):
    for name in ("train/loss", "val/loss", "val/mIoU"):
        client.log_metric(run_id, name, step * 0.01 + len(name), step=step)
"""


def test_eight_concurrent_trials_lose_no_metric_point(mlflow_server):
    uri = mlflow_server[0]
    client = MlflowClient(uri)
    experiment = client.create_experiment("concurrency")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(8)]
    steps = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_LOGGER, uri, run_id, str(steps)], stderr=subprocess.PIPE, text=True
        )
        for run_id in run_ids
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    for run_id in run_ids:
        for name in ("train/loss", "val/loss", "val/mIoU"):
            history = client.get_metric_history(run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), (run_id, name)
