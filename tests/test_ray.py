"""The Ray launcher against a real 2-node Ray cluster started by the test (ray start)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import (
    PLANTED,
    PLANTED_ENV,
    STUB,
    alive,
    assert_each_embedding_built_once,
    assert_tracked_like_the_local_launcher,
    find_secrets,
    output,
    planted_overrides,
    read_csv,
    received_real_values,
    start_stub,
    states,
    studies,
    tracking_args,
    tree,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.duration(185)]


def ray_args(address: str) -> list[str]:
    return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}", "+hydra.launcher.ray.remote.num_cpus=1"]


def run_stub_on_ray(
    address: str, sweep_dir: Path, *args: str, timeout: float = 600, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *ray_args(address), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})},
    )


def test_existing_cluster_runs_trials_on_both_nodes_without_a_barrier(ray_cluster, tmp_path):
    result = run_stub_on_ray(
        ray_cluster,
        tmp_path / "sweep",
        "task=a,b",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=4",
        "sleep=0.5",
        *tracking_args(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for study in studies(tmp_path / "sweep").values():
        assert states(study) == ["COMPLETE"] * 6
    assert_tracked_like_the_local_launcher(
        MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "stub", tmp_path / "sweep", 2, 12
    )
    assert (tmp_path / "sweep" / "mlflow_server.log").exists()  # trials in other processes log over HTTP
    timings = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/timing.json")]
    assert len({t["node"] for t in timings}) == 2  # both nodes of the cluster took trials
    assert "object_store_memory" not in result.stderr  # connecting to an existing cluster worked


def test_killed_worker_is_retried_and_the_benchmark_completes(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    driver = start_stub(
        sweep,
        *ray_args(ray_cluster),
        "+hydra.launcher.ray.remote.max_retries=1",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "sleep=0.5",
        "slow_trials=[0]",
        "slow_factor=20",
    )
    attempts = sweep / "0" / "attempts.jsonl"
    wait_for(attempts.exists, 120, "trial 0 to start")
    victim = json.loads(attempts.read_text().splitlines()[0])["pid"]
    os.kill(victim, signal.SIGKILL)  # the Ray worker process running trial 0
    assert driver.wait(timeout=300) == 0, output(sweep)
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE"] * 4
    runs = [json.loads(line) for line in attempts.read_text().splitlines()]
    assert len(runs) == 2 and runs[1]["pid"] != victim  # Ray re-ran it in a fresh worker


def test_request_no_node_can_hold_fails_before_any_trial(ray_cluster, tmp_path):
    result = run_stub_on_ray(ray_cluster, tmp_path, "+hydra.launcher.ray.remote.num_gpus=2", timeout=300)
    assert result.returncode != 0
    assert "a trial asks Ray for 2 GPU, 1 CPU" in result.stderr
    assert "no node of the Ray cluster" in result.stderr and "largest has 0 GPU, 2 CPU" in result.stderr
    assert not list(tmp_path.glob("*/attempts.jsonl"))


def test_sigterm_of_the_driver_cancels_its_ray_tasks_and_records_them_interrupted(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    driver = start_stub(
        sweep,
        *ray_args(ray_cluster),
        *tracking_args(tmp_path),
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hold_trials=[0,1]",
        f"release={tmp_path / 'never'}",
        cwd=tmp_path,
    )
    wait_for(lambda: len(list(sweep.glob("*/attempts.jsonl"))) == 2, 120, "two trials running on the cluster")
    workers = [json.loads(p.read_text().splitlines()[0])["pid"] for p in sweep.glob("*/attempts.jsonl")]
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) != 0
    wait_for(lambda: not [pid for pid in workers if alive(pid)], 60, "the Ray workers running the trials to be killed")
    (study,) = studies(sweep).values()
    assert sorted(states(study)) == ["FAIL", "FAIL", "WAITING", "WAITING"]  # both interrupted, both queued again
    assert all(t.user_attrs.get("interrupted") for t in study.trials if t.state.name == "FAIL")
    trial_runs = tree(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))["trial"]
    assert (
        sorted((r.data.tags.get("bench.state"), r.info.status) for r in trial_runs) == [("INTERRUPTED", "KILLED")] * 2
    )


def test_no_planted_secret_reaches_disk_logs_or_mlflow_on_ray(ray_cluster, tmp_path):
    """The masking test of test_tracking, on the Ray launcher: jobs in Ray workers, logging over HTTP
    to bench's own authenticated server (whose generated password must not leak either)."""
    # The cluster's workers were started without the variable: Ray's runtime_env ships it, from the
    # driver's environment, as a user would.
    ship_env = [f"+hydra.launcher.ray.init.runtime_env.env_vars.{name}=${{oc.env:{name}}}" for name in PLANTED_ENV]
    result = run_stub_on_ray(
        ray_cluster,
        tmp_path / "sweep",
        *tracking_args(tmp_path),
        "task=a,b",
        "fail_tasks=[b]",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=2",
        *planted_overrides(),
        *ship_env,
        cwd=tmp_path,
        env=PLANTED_ENV,
    )
    assert "cells stopped before their budget: task=b" in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "sweep" / "mlflow_server.log").exists()  # trials in other processes log over HTTP
    assert received_real_values(tmp_path / "sweep")
    found = find_secrets(list(PLANTED.values()), [tmp_path], {"stdout": result.stdout, "stderr": result.stderr})
    assert not found, found
    # The server's generated credentials reached the jobs in their config, and nowhere else in clear.
    in_clear = [
        p for p in tmp_path.rglob("*") if p.is_file() and re.search(rb"://bench:(?!\*\*\*)[^@\s]+@", p.read_bytes())
    ]
    assert not in_clear and not re.search(r"://bench:(?!\*\*\*)[^@\s]+@", result.stdout + result.stderr)


@pytest.mark.slow
def test_bench_benchmark_on_the_ray_cluster(ray_cluster, run_cli, tmp_path):
    """bench itself, `launcher=ray launcher.address=...`: real training on a worker of the cluster,
    then 2 seed repeats tested there, tracked as with the local launcher (multi-task sweeps on the
    cluster are covered above)."""
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "launcher=ray",
        f"launcher.address={ray_cluster}",
        "launcher.gpus_per_trial=0",
        "launcher.cpus_per_trial=2",
        "launcher.parallel_trials=1",
        "task.max_epochs=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.repeats=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert states(study) == ["COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    assert_tracked_like_the_local_launcher(client, "bench", tmp_path / "sweep", 1, 1, repeats=2)
    (trial,) = tree(client, "bench")["trial"]
    assert client.get_metric_history(trial.info.run_id, "val/Accuracy")  # Lightning logged from the worker


def test_each_cell_asks_ray_for_its_own_resources(ray_cluster, tmp_path):
    """A cell's own hydra.launcher request wins over the primary config's (bench: a model's
    resources), so models of different sizes share one benchmark: model y's trials take both CPUs
    of a node, model x's one."""
    result = run_stub_on_ray(
        ray_cluster,
        tmp_path / "sweep",
        "model=x,y",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.launcher.ray.remote.num_cpus=${model.cpus}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    granted: dict[str, set[float]] = {}
    for attempts in (tmp_path / "sweep").glob("*/attempts.jsonl"):
        attempt = json.loads(attempts.read_text().splitlines()[0])
        granted.setdefault(attempt["model"], set()).add(attempt["ray_resources"]["CPU"])
    assert granted == {"x": {1.0}, "y": {2.0}}, granted


@pytest.mark.parametrize("units, at_once", [(0.5, 4), (2, 1)])
def test_fractional_requests_pack_trials_and_count_as_gpu_hours(ray_cluster, tmp_path, units, at_once):
    """A custom resource stands in for GPUs (the head node has 2 units): 0.5 per trial runs 2 trials
    per unit at once, 2 per trial runs 1 trial per 2 units. Every trial's GPU-hours are its units x
    its run time."""
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    driver = start_stub(
        sweep,
        *ray_args(ray_cluster),
        "hydra.launcher.ray.remote.num_cpus=0.25",
        f"+hydra.launcher.ray.remote.resources={{unit:{units}}}",
        "hydra.sweeper.accounting.gpu_resources=[unit]",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=6",
        "hold_trials=[0,1,2,3,4,5]",
        f"release={release}",
    )
    wait_for(
        lambda: driver.poll() is not None or len(list(sweep.glob("*/held"))) >= at_once,
        180,
        f"{at_once} trials holding units at once",
    )
    assert driver.poll() is None, output(sweep)
    release.touch()
    assert driver.wait(timeout=300) == 0, output(sweep)
    spans = []
    for attempts in sweep.glob("*/attempts.jsonl"):
        assert json.loads(attempts.read_text().splitlines()[0])["ray_resources"]["unit"] == units
        timing = json.loads((attempts.parent / "timing.json").read_text())
        spans.append((timing["start"], timing["end"]))
    running = [sum(start <= t < end for start, end in spans) for t, _ in spans]
    assert len(spans) == 6 and max(running) == at_once  # never more than the units allow
    for row in read_csv(sweep / "results.csv"):
        timing = json.loads((Path(row["job_dir"]) / "timing.json").read_text())
        assert float(row["gpu_hours"]) * 3600 >= units * (timing["end"] - timing["start"])
        assert float(row["gpu_hours"]) * 3600 <= units * float(row["duration_s"])
        assert float(row["cpu_hours"]) == pytest.approx(float(row["gpu_hours"]) * 0.25 / units)


def test_a_probe_sweep_on_ray_builds_each_embedding_once_across_concurrent_trials(ray_cluster, run_cli, tmp_path):
    """protocol=linear_probe on the cluster, 2 trials at a time (Ray workers on either node, each its own
    process): the embedding cache is a folder on this machine's file system, which both nodes share. The
    training and validation splits' entries are built once across all trials (one builder holds the
    entry's flock, a concurrent trial blocks on it and then reads the entry), every other trial reads
    them, and no half-written entry is left. The cache dir is the default one, $BENCH_CACHE_DIR, exported
    in the driver's environment only (the nodes were started without it): it reaches the workers through
    hydra.sweeper.forward_env, so the entries land there and not in the workers' $HOME."""

    sweep, cache = tmp_path / "sweep", tmp_path / "shared" / "embeddings"
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "protocol=linear_probe",
        "probe.epochs=10",
        "launcher=ray",
        f"launcher.address={ray_cluster}",
        "launcher.gpus_per_trial=0",
        "launcher.cpus_per_trial=1",
        "launcher.parallel_trials=2",
        "hydra.sweeper.n_trials=4",
        "mlflow.enabled=false",
        f"hydra.sweep.dir={sweep}",
        env={"BENCH_CACHE_DIR": str(cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_each_embedding_built_once(sweep, cache)
