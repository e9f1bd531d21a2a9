"""The SLURM launcher against a real single-node SLURM (scripts/slurm-up.sh): sbatch, sacct,
scancel and scontrol requeue for real. No gres here, so trials ask for 0 GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.test_sweeper import STUB, read_csv, states, studies
from tests.test_tracking import assert_tracked_like_the_local_launcher, tracking_args, tree

pytestmark = pytest.mark.cluster


def slurm_stub_args(sweep_dir: Path, *args: str) -> list[str]:
    # A fresh submitit folder per test: job ids restart when the cluster's state is purged.
    return [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=submitit_slurm",
            f"hydra.launcher.submitit_folder={sweep_dir}/.submitit/%j", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10", "hydra.sweeper.poll_interval=0.5", *args]


def run_stub_on_slurm(sweep_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(slurm_stub_args(sweep_dir, *args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"})


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def first_attempt(job_dir: Path) -> dict | None:
    attempts = job_dir / "attempts.jsonl"
    return json.loads(attempts.read_text().splitlines()[0]) if attempts.exists() and attempts.read_text() else None


def squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.strip()


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-j", job_id, "--format=State"], capture_output=True, text=True).stdout
    return out.split()[0] if out.split() else ""


def test_multi_task_sweep_runs_as_real_slurm_jobs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub_on_slurm(sweep, "task=a,b", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", *tracking_args(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    for study in studies(sweep).values():
        assert states(study) == ["COMPLETE"] * 3
    assert_tracked_like_the_local_launcher(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "stub", sweep, 2, 6)
    jobs = {first_attempt(p.parent)["slurm_job"] for p in sweep.glob("*/attempts.jsonl")}
    assert len(jobs) == 6 and None not in jobs  # each trial was its own sbatch job
    assert {sacct_state(job) for job in jobs} == {"COMPLETED"}


def test_scancel_is_recorded_as_a_failed_trial_within_30_s(slurm_cluster, tmp_path):
    driver = subprocess.Popen(
        slurm_stub_args(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_rate=0.5",
                        "sleep=0.3", "slow_trials=[0]", "slow_factor=400"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    attempt = wait_for(lambda: first_attempt(tmp_path / "0"), 180, "trial 0 to start on SLURM")
    cancelled = time.time()
    subprocess.run(["scancel", attempt["slurm_job"]], check=True)

    def trial_0_failed() -> bool:
        rows = read_csv(tmp_path / "results.csv") if (tmp_path / "results.csv").exists() else []
        return any(r["trial"] == "0" and r["state"] == "FAIL" for r in rows)

    wait_for(trial_0_failed, 30, "the cancelled trial to be recorded FAIL")
    detected_after = time.time() - cancelled
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, out[-3000:]  # the sweep went on and met its budget
    (study,) = studies(tmp_path).values()
    assert states(study).count("COMPLETE") == 3 and states(study)[0] == "FAIL"
    assert detected_after < 30
    print(f"scancel -> FAIL recorded after {detected_after:.1f} s")


def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    """Preemption, as SLURM does it: the running job is requeued and starts again. The trial
    continues from its last checkpoint instead of starting over."""
    driver = subprocess.Popen(slurm_stub_args(tmp_path, "hydra.sweeper.n_trials=1", "steps=12", "step_sleep=1.0"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    attempt = wait_for(lambda: first_attempt(tmp_path / "0"), 180, "the trial to start on SLURM")
    progress = tmp_path / "0" / "progress.json"
    wait_for(lambda: progress.exists() and json.loads(progress.read_text())["step"] >= 3, 120, "3 steps of progress")
    subprocess.run(["scontrol", "requeue", attempt["slurm_job"]], check=True)
    # Once the old instance is gone, SLURM holds a requeued job for about 2 minutes (BeginTime =
    # now + 120 s) before it may start again: realistic, but it only slows the test.
    wait_for(lambda: squeue_state(attempt["slurm_job"]) == "PENDING BeginTime", 60, "the job to be requeued")
    subprocess.run(["scontrol", "update", f"JobId={attempt['slurm_job']}", "StartTime=now"], check=True)
    out, _ = driver.communicate(timeout=420)
    assert driver.returncode == 0, out[-3000:]
    attempts = [json.loads(line) for line in (tmp_path / "0" / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2
    assert attempts[1]["slurm_job"] == attempts[0]["slurm_job"]  # the same SLURM job, requeued
    assert attempts[1]["resumed_from"] >= 3  # continued, not restarted
    (study,) = studies(tmp_path).values()
    assert states(study) == ["COMPLETE"]


def test_request_the_cluster_cannot_satisfy_stops_at_the_first_trial(slurm_cluster, tmp_path):
    result = run_stub_on_slurm(tmp_path, "hydra.launcher.gpus_per_node=1", "hydra.sweeper.n_trials=5", timeout=300)
    assert result.returncode != 0
    assert "slurm refused the trial's job (" in result.stderr and "gpus_per_node=1" in result.stderr
    assert "Invalid generic resource" in result.stderr
    (study,) = studies(tmp_path).values()
    assert states(study) == ["FAIL"]  # one trial tried, not the whole budget


@pytest.mark.slow
def test_bench_benchmark_on_slurm(slurm_cluster, run_cli, tmp_path):
    """bench itself, `launcher=slurm`: real training in an sbatch job, tracked as with the local
    launcher (multi-task sweeps on SLURM are covered above)."""
    result = run_cli(
        "-m", "task=synthetic_cls", "launcher=slurm", "launcher.gpus_per_trial=0",
        "launcher.cpus_per_trial=1", "launcher.memory_gb=null", "launcher.timeout_min=15", "launcher.parallel_trials=2",
        "task.max_epochs=1", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert states(study) == ["COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    assert_tracked_like_the_local_launcher(client, "bench", tmp_path / "sweep", 1, 1)
    (trial,) = tree(client, "bench")["trial"]
    assert client.get_metric_history(trial.info.run_id, "val/Accuracy")  # Lightning logged from the job
    job_folders = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.is_dir()]
    assert len(job_folders) == 1  # the trial ran as its own SLURM job
