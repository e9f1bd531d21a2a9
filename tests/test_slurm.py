"""The SLURM launcher against a real single-node SLURM (scripts/slurm-up.sh): sbatch, sacct,
scancel and scontrol requeue for real. No gres here, so trials ask for 0 GPUs."""

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

from bench.paths import REPO_ROOT
from tests.helpers import (
    STUB,
    assert_each_embedding_built_once,
    assert_tracked_like_the_local_launcher,
    output,
    read_csv,
    start_stub,
    states,
    studies,
    tracking_args,
    tree,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.duration(235)]


def slurm_args(sweep_dir: Path) -> list[str]:
    # A fresh submitit folder per test: job ids restart when the cluster's state is purged.
    return [
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.submitit_folder={sweep_dir}/.submitit/%j",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "hydra.sweeper.poll_interval=0.5",
    ]


def run_stub_on_slurm(sweep_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *slurm_args(sweep_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def start_stub_on_slurm(sweep_dir: Path, *args: str) -> subprocess.Popen:
    return start_stub(sweep_dir, *slurm_args(sweep_dir), *args)


def first_attempt(job_dir: Path) -> dict | None:
    attempts = job_dir / "attempts.jsonl"
    return json.loads(attempts.read_text().splitlines()[0]) if attempts.exists() and attempts.read_text() else None


def squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.strip()


def sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "--format=State"], capture_output=True, text=True
    ).stdout
    return out.split()[0] if out.split() else ""


def sacct_cpu_seconds(job_id: str) -> float:
    """CPU time SLURM accounted to the job, every run of it (-D: requeues) included."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "--format=CPUTimeRAW"], capture_output=True, text=True
    ).stdout
    return float(sum(int(v) for v in out.split()))


def submitted_jobs(sweep_dir: Path) -> list[str]:
    folder = sweep_dir / ".submitit"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.exists() else []


def test_multi_task_sweep_runs_as_real_slurm_jobs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub_on_slurm(
        sweep, "task=a,b", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", *tracking_args(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for study in studies(sweep).values():
        assert states(study) == ["COMPLETE"] * 3
    assert_tracked_like_the_local_launcher(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "stub", sweep, 2, 6)
    jobs = {first_attempt(p.parent)["slurm_job"] for p in sweep.glob("*/attempts.jsonl")}
    assert len(jobs) == 6 and None not in jobs  # each trial was its own sbatch job
    assert {sacct_state(job) for job in jobs} == {"COMPLETED"}
    assert (sweep / ".submitit").stat().st_mode & 0o777 == 0o700  # the job pickles carry real values


def test_each_cell_asks_slurm_for_its_own_resources(slurm_cluster, tmp_path):
    """A cell's own hydra.launcher request (bench: its model's resources) is what its jobs ask
    sbatch for: model y's trials get 2 CPUs, model x's 1, in one sweep."""
    sweep = tmp_path / "sweep"
    result = run_stub_on_slurm(
        sweep,
        "model=x,y",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=2",
        "hydra.launcher.cpus_per_task=${model.cpus}",
        "sleep=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    allocated = {}
    for attempts in sweep.glob("*/attempts.jsonl"):
        attempt = first_attempt(attempts.parent)
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", attempt["slurm_job"], "--format=AllocCPUS"],
            capture_output=True,
            text=True,
        ).stdout.split()
        allocated[attempt["model"]] = int(out[0])
    assert allocated == {"x": 1, "y": 2}, allocated
    # What each trial cost is what SLURM's accounting says it used: its CPU time, within 2 %.
    for row in read_csv(sweep / "results.csv"):
        job = first_attempt(Path(row["job_dir"]))["slurm_job"]
        assert float(row["cpu_hours"]) * 3600 == pytest.approx(sacct_cpu_seconds(job), rel=0.02)
        assert sacct_cpu_seconds(job) >= 2 * allocated[row["model"]]  # it slept 2 s on each of its CPUs


def test_scancel_is_recorded_as_a_failed_trial_within_30_s(slurm_cluster, tmp_path):
    driver = start_stub_on_slurm(
        tmp_path / "sweep",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.max_failure_rate=0.5",
        "hold_trials=[0]",
        f"release={tmp_path / 'never'}",
    )
    attempt = wait_for(lambda: first_attempt(tmp_path / "sweep" / "0"), 180, "trial 0 to start on SLURM")
    cancelled = time.time()
    subprocess.run(["scancel", attempt["slurm_job"]], check=True)

    def trial_0_failed() -> bool:
        rows = read_csv(tmp_path / "sweep" / "results.csv") if (tmp_path / "sweep" / "results.csv").exists() else []
        return any(r["trial"] == "0" and r["state"] == "FAIL" for r in rows)

    wait_for(trial_0_failed, 30, "the cancelled trial to be recorded FAIL")
    detected_after = time.time() - cancelled
    assert driver.wait(timeout=300) == 0, output(tmp_path / "sweep")  # the sweep went on and met its budget
    (study,) = studies(tmp_path / "sweep").values()
    assert states(study).count("COMPLETE") == 3 and states(study)[0] == "FAIL"
    print(f"scancel -> FAIL recorded after {detected_after:.1f} s")


def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    """Preemption, as SLURM does it: the running job is requeued and starts again. The trial
    continues from its last checkpoint instead of starting over."""
    sweep = tmp_path / "sweep"
    driver = start_stub_on_slurm(sweep, "hydra.sweeper.n_trials=1", "steps=12", "step_sleep=1.0")
    attempt = wait_for(lambda: first_attempt(sweep / "0"), 180, "the trial to start on SLURM")
    progress = sweep / "0" / "progress.json"
    wait_for(lambda: progress.exists() and json.loads(progress.read_text())["step"] >= 3, 120, "3 steps of progress")
    subprocess.run(["scontrol", "requeue", attempt["slurm_job"]], check=True)
    # Once the old instance is gone, SLURM holds a requeued job for about 2 minutes (BeginTime =
    # now + 120 s) before it may start again: realistic, but it only slows the test.
    wait_for(lambda: squeue_state(attempt["slurm_job"]) == "PENDING BeginTime", 60, "the job to be requeued")
    subprocess.run(["scontrol", "update", f"JobId={attempt['slurm_job']}", "StartTime=now"], check=True)
    assert driver.wait(timeout=420) == 0, output(sweep)
    attempts = [json.loads(line) for line in (sweep / "0" / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2
    assert attempts[1]["slurm_job"] == attempts[0]["slurm_job"]  # the same SLURM job, requeued
    assert attempts[1]["resumed_from"] >= 3  # continued, not restarted
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE"]
    # Its cost counts both runs of the job: the 3+ steps before the requeue and the rest after it.
    (row,) = read_csv(sweep / "results.csv")
    assert float(row["cpu_hours"]) * 3600 == pytest.approx(sacct_cpu_seconds(attempts[0]["slurm_job"]), rel=0.02)
    last_run = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", attempts[0]["slurm_job"], "--format=CPUTimeRAW"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert float(row["cpu_hours"]) * 3600 > int(last_run[0])


def test_a_dead_drivers_running_job_is_followed_by_the_next_driver_not_rerun(slurm_cluster, tmp_path):
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    args = ["hydra.sweeper.n_trials=2", "hold_trials=[0]", f"release={release}"]
    driver = start_stub_on_slurm(sweep, *args)
    attempt = wait_for(lambda: first_attempt(sweep / "0"), 180, "trial 0 to run on SLURM")
    driver.send_signal(signal.SIGKILL)  # a lost login session: the job goes on without its driver
    driver.wait()
    resumed = start_stub_on_slurm(sweep, *args)
    wait_for(lambda: "trial 0 followed" in output(sweep), 60, "the new driver to follow the running job")
    release.touch()
    assert resumed.wait(timeout=300) == 0, output(sweep)
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE", "COMPLETE"]  # trial 0 recorded from its original job
    assert [json.loads(line)["slurm_job"] for line in (sweep / "0" / "attempts.jsonl").read_text().splitlines()] == [
        attempt["slurm_job"]
    ]
    assert not [r for r in read_csv(sweep / "results.csv") if r["interrupted"] == "True"]


def test_sigterm_of_the_driver_cancels_its_slurm_jobs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    driver = start_stub_on_slurm(sweep, "hydra.sweeper.n_trials=1", "hold_trials=[0]", f"release={tmp_path / 'never'}")
    attempt = wait_for(lambda: first_attempt(sweep / "0"), 180, "trial 0 to run on SLURM")
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) != 0
    wait_for(lambda: sacct_state(attempt["slurm_job"]) == "CANCELLED", 60, "the job to be cancelled")
    (study,) = studies(sweep).values()
    assert states(study) == ["FAIL", "WAITING"] and study.trials[0].user_attrs["interrupted"] is True


def test_a_request_no_node_can_hold_stops_before_any_submission(slurm_cluster, tmp_path):
    """launcher=slurm's defaults (8 CPUs, 32 GB) on this 2-CPU node: sbatch would accept the job and
    it would pend forever (no EnforcePartLimits). bench says so before submitting anything."""
    sweep = tmp_path / "sweep"
    for dry_run in ("false", "true"):
        result = run_stub_on_slurm(
            sweep,
            "hydra.launcher.cpus_per_task=64",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.dry_run={dry_run}",
            timeout=300,
        )
        assert result.returncode != 0
        assert (
            "every trial asks SLURM for 64 CPU" in result.stderr
            and "no node of partition 'debug' can hold it" in result.stderr
        )
        assert not sweep.exists()  # nothing created, nothing submitted


def test_a_job_pending_for_a_reason_that_never_resolves_stops_the_sweep(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub_on_slurm(
        sweep,
        "hydra.launcher.cpus_per_task=64",
        "hydra.sweeper.check_resources=false",
        "hydra.sweeper.n_trials=2",
        timeout=300,
    )
    assert result.returncode != 0
    assert "can never start (pending reason" in result.stderr, result.stderr[-3000:]
    (job,) = submitted_jobs(sweep)  # one job tried, then the sweep stopped
    wait_for(lambda: sacct_state(job) == "CANCELLED", 60, "the stuck job to be cancelled")
    (study,) = studies(sweep).values()
    assert states(study) == ["FAIL"]


def test_a_request_the_cluster_refuses_stops_at_the_first_trial(slurm_cluster, tmp_path):
    result = run_stub_on_slurm(
        tmp_path,
        "hydra.launcher.gpus_per_node=1",
        "hydra.sweeper.check_resources=false",
        "hydra.sweeper.n_trials=5",
        timeout=300,
    )
    assert result.returncode != 0
    assert "slurm refused the trial's job (" in result.stderr and "gpus_per_node=1" in result.stderr
    assert "Invalid generic resource" in result.stderr
    (study,) = studies(tmp_path).values()
    assert states(study) == ["FAIL"]  # one trial tried, not the whole budget


def test_sbatch_failing_while_the_controller_is_down_is_retried(slurm_cluster, tmp_path):
    down = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "slurm-down.sh"), "--only", "slurmctld"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    sweep = tmp_path / "sweep"
    driver = start_stub_on_slurm(sweep, "hydra.sweeper.n_trials=1", "hydra.sweeper.check_resources=false")
    try:
        wait_for(lambda: "sbatch failed, retrying in" in output(sweep), 180, "a failed sbatch to be retried")
    finally:
        up = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=600
        )
    assert up.returncode == 0, up.stderr
    assert driver.wait(timeout=300) == 0, output(sweep)
    (study,) = studies(sweep).values()
    assert states(study) == ["COMPLETE"]


@pytest.mark.slow
def test_bench_benchmark_on_slurm(slurm_cluster, run_cli, tmp_path):
    """bench itself, `launcher=slurm`: real training in an sbatch job, then a seed repeat tested in a
    job of its own, tracked as with the local launcher (multi-task sweeps on SLURM are covered above)."""
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "launcher=slurm",
        "launcher.gpus_per_trial=0",
        "launcher.cpus_per_trial=1",
        "launcher.memory_gb=null",
        "launcher.timeout_min=15",
        "launcher.parallel_trials=2",
        "task.max_epochs=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.repeats=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert states(study) == ["COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    assert_tracked_like_the_local_launcher(client, "bench", tmp_path / "sweep", 1, 1, repeats=1)
    (trial,) = tree(client, "bench")["trial"]
    assert client.get_metric_history(trial.info.run_id, "val/Accuracy")  # Lightning logged from the job
    assert len(submitted_jobs(tmp_path / "sweep")) == 2  # the trial and the repeat each ran as a SLURM job


def test_a_probe_sweep_on_slurm_builds_each_embedding_once_across_concurrent_jobs(slurm_cluster, run_cli, tmp_path):
    """protocol=knn as SLURM jobs, 2 at a time: the embedding cache is a folder on this machine's file
    system, which the jobs share. The training and validation splits' entries are built once across all
    jobs (one builder holds the entry's flock, a concurrent job blocks on it and then reads the entry),
    every other job reads them, and no half-written entry is left."""

    sweep, cache = tmp_path / "sweep", tmp_path / "shared" / "embeddings"
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "protocol=knn",
        "launcher=slurm",
        "launcher.gpus_per_trial=0",
        "launcher.cpus_per_trial=1",
        "launcher.memory_gb=null",
        "launcher.timeout_min=15",
        "launcher.parallel_trials=2",
        "hydra.sweeper.poll_interval=0.5",
        "hydra.sweeper.n_trials=4",
        "mlflow.enabled=false",
        f"embeddings.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(submitted_jobs(sweep)) == 4  # each trial ran as a SLURM job of its own
    assert_each_embedding_built_once(sweep, cache)
