"""The Ray launcher against a real 2-node Ray cluster started by the test (ray start)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.test_sweeper import STUB, states, studies
from tests.test_tracking import assert_tracked_like_the_local_launcher, tracking_args, tree

pytestmark = pytest.mark.cluster


def run_stub_on_ray(address: str, sweep_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=ray",
         f"hydra.launcher.ray.init.address={address}", "+hydra.launcher.ray.remote.num_cpus=1", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def test_existing_cluster_runs_trials_on_both_nodes_without_a_barrier(ray_cluster, tmp_path):
    result = run_stub_on_ray(ray_cluster, tmp_path / "sweep", "task=a,b", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=4",
                             "sleep=0.5", *tracking_args(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    for study in studies(tmp_path / "sweep").values():
        assert states(study) == ["COMPLETE"] * 6
    assert_tracked_like_the_local_launcher(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "stub", tmp_path / "sweep", 2, 12)
    assert (tmp_path / "sweep" / "mlflow_server.log").exists()  # trials in other processes log over HTTP
    timings = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/timing.json")]
    assert len({t["node"] for t in timings}) == 2  # both nodes of the cluster took trials
    assert "object_store_memory" not in result.stderr  # connecting to an existing cluster worked


def test_killed_worker_is_retried_and_the_benchmark_completes(ray_cluster, tmp_path):
    args = [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={tmp_path}", "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address={ray_cluster}", "+hydra.launcher.ray.remote.num_cpus=1",
            "+hydra.launcher.ray.remote.max_retries=1", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
            "sleep=0.5", "slow_trials=[0]", "slow_factor=20"]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    attempts = tmp_path / "0" / "attempts.jsonl"
    deadline = time.time() + 120
    while not attempts.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert attempts.exists(), "trial 0 never started"
    victim = json.loads(attempts.read_text().splitlines()[0])["pid"]
    os.kill(victim, signal.SIGKILL)  # the Ray worker process running trial 0
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-3000:]
    (study,) = studies(tmp_path).values()
    assert states(study) == ["COMPLETE"] * 4
    runs = [json.loads(line) for line in attempts.read_text().splitlines()]
    assert len(runs) == 2 and runs[1]["pid"] != victim  # Ray re-ran it in a fresh worker


def test_request_no_node_can_hold_fails_before_any_trial(ray_cluster, tmp_path):
    result = run_stub_on_ray(ray_cluster, tmp_path, "+hydra.launcher.ray.remote.num_gpus=2", timeout=300)
    assert result.returncode != 0
    assert "every trial asks Ray for 2 GPU, 1 CPU" in result.stderr
    assert "no node of the Ray cluster" in result.stderr and "largest has 0 GPU, 2 CPU" in result.stderr
    assert not list(tmp_path.glob("*/attempts.jsonl"))


@pytest.mark.slow
def test_bench_benchmark_on_the_ray_cluster(ray_cluster, run_cli, tmp_path):
    """bench itself, `launcher=ray launcher.address=...`: real training on a worker of the cluster,
    tracked as with the local launcher (multi-task sweeps on the cluster are covered above)."""
    result = run_cli(
        "-m", "task=synthetic_cls", "launcher=ray", f"launcher.address={ray_cluster}",
        "launcher.gpus_per_trial=0", "launcher.cpus_per_trial=2", "launcher.parallel_trials=1",
        "task.max_epochs=1", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert states(study) == ["COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    assert_tracked_like_the_local_launcher(client, "bench", tmp_path / "sweep", 1, 1)
    (trial,) = tree(client, "bench")["trial"]
    assert client.get_metric_history(trial.info.run_id, "val/Accuracy")  # Lightning logged from the worker
