"""Multi-process trials (bench.ddp): one trial trained by 2 processes on CPU (gloo), in this process
(the local launcher), as a Ray task of the test cluster and as a SLURM job of the test cluster.

What every run asserts: 2 ranks really trained (ranks/<rank>.json: world size 2, two distinct PIDs),
rank 0 alone tracked (one MLflow trial run, tagged bench.world_size=2) and reported (one Optuna
intermediate value per epoch), and no child rank is left running after the trial, pruned or not.

The metric, against a 1-process run of the same trial (same data, seed, global batch): 2 processes
load 4 tiles each (the global batch stays batch_size=8) and DDP averages their gradients, but a
step does not see the same tiles as a 1-process step: DistributedSampler shuffles with a generator
of its own. On synthetic_cls's 16 validation tiles that alone moved the best accuracy of 4 epochs
at lr 1e-3 from 0.61 (1 process) to 0.80 (2): a tolerance that wide would pass a broken run. So the
runs compared train at lr 1e-7, where the weights stay the seed's initial ones, and what is compared
is the evaluation: each rank validates half of the tiles, and the metric (torchmetrics) and the loss
(sync_dist) must be gathered from both halves. The best val/Accuracy must then equal the 1-process
one within 1e-6 and every epoch's val/loss within a relative 1e-4 (float summation order); a
rank-0-only metric would be off by far more (its 8 tiles against 16).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from bench.paths import CONFIG_DIR
from tests.helpers import alive, studies, tree

pytestmark = [pytest.mark.slow, pytest.mark.duration(230)]

TOLERANCE = 1e-6  # best val/Accuracy, 2 processes vs 1 (see the module docstring)
LOSS_RTOL = 1e-4  # each epoch's val/loss, relative
TRAINING = ["task=synthetic_cls", "task.max_epochs=2", "task.patience=2", "hparams.lr=1e-7", "seed=0"]
TWO_CPU_PROCESSES = ["launcher.gpus_per_trial=0", "launcher.processes_per_trial=2"]
# A pruner that prunes every trial at its second report (epoch 1): the value can never reach 2.
PRUNE_AT_EPOCH_1 = "_target_: optuna.pruners.ThresholdPruner\nlower: 2.0\nn_warmup_steps: 1\n"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory) -> tuple[float, list[float]]:
    """The 1-process run's best val/Accuracy and its val/loss per epoch."""
    from bench.train import train

    out = tmp_path_factory.mktemp("one_process")
    value = train(_compose(*TRAINING, "launcher.gpus_per_trial=0", f"data_dir={data_dir}", f"output_dir={out}"))
    assert isinstance(value, float) and 0 <= value <= 1, value
    assert not list(out.glob("ranks/*.json"))  # one process: no ranks recorded
    return value, _val_losses(out)


def _val_losses(job_dir: Path) -> list[float]:
    (path,) = job_dir.glob("metrics/version_*/metrics.csv")
    with open(path) as f:
        return [float(row["val/loss"]) for row in csv.DictReader(f) if row.get("val/loss")]


def _assert_matches_one_process(value: float, job_dir: Path, one_process: tuple[float, list[float]]) -> None:
    reference, losses = one_process
    assert abs(value - reference) <= TOLERANCE, (value, reference)
    assert _val_losses(job_dir) == pytest.approx(losses, rel=LOSS_RTOL)


def _ranks(job_dir: Path, started_by: str = "rank 0") -> list[dict]:
    """What each rank wrote as it started fitting; every child rank gone. Rank 1 started by rank 0
    (the local launcher, Ray) or by srun (a SLURM job of 2 tasks)."""
    ranks = sorted((json.loads(p.read_text()) for p in job_dir.glob("ranks/*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)], ranks
    assert ranks[1]["started_by"] == started_by, ranks
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert not alive(ranks[1]["pid"]), "child rank 1 still running after the trial"
    return ranks


def _assert_rank_zero_alone_tracked_and_reported(tmp_path: Path, sweep: Path, state: str, epochs: int) -> None:
    (study,) = studies(sweep).values()
    (trial,) = study.trials
    assert trial.state.name == state
    assert sorted(trial.intermediate_values) == list(range(epochs))  # one report per epoch, from rank 0 only
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    (run,) = tree(client, "bench")["trial"]  # one MLflow run for the trial, not one per rank
    assert run.data.tags["bench.world_size"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val/Accuracy")) == epochs


def _job_dir(sweep: Path) -> Path:
    (ranks_dir,) = {p.parent for p in sweep.rglob("ranks/0.json")}
    return ranks_dir.parent


def test_two_processes_in_this_process_match_one_within_tolerance(compose_cfg, one_process, tmp_path, monkeypatch):
    """The local launcher's path: train() in this process is rank 0 and starts rank 1. The config the
    child ranks start from is owner-only and holds no environment value: a child resolves its own."""
    from bench.train import train

    planted = "PLANTED-4d1f9e2b77"
    monkeypatch.setenv("BENCH_TEST_PLANTED", planted)
    overrides = (*TRAINING, *TWO_CPU_PROCESSES, "+planted=${oc.env:BENCH_TEST_PLANTED}")
    value = train(compose_cfg(*overrides, f"output_dir={tmp_path / 'job'}"))
    assert isinstance(value, float)
    _assert_matches_one_process(value, tmp_path / "job", one_process)
    _ranks(tmp_path / "job")
    assert (tmp_path / "job" / "checkpoints" / "best.ckpt").is_file()  # written once, by rank 0
    shared = tmp_path / "job" / "ranks" / "job_config.yaml"
    assert shared.stat().st_mode & 0o777 == 0o600
    assert planted not in shared.read_text() and "oc.env:BENCH_TEST_PLANTED" in shared.read_text()


def test_a_rerun_two_process_job_resumes_from_its_last_checkpoint(compose_cfg, tmp_path):
    """A SLURM requeue or a Ray retry of a 2-process trial: both ranks continue from last.ckpt (which
    rank 0 alone wrote). Also two multi-process trials one after the other in one process, as the
    local launcher runs them: the second starts a process group of its own."""
    from bench.train import train

    out = tmp_path / "job"
    train(
        compose_cfg(
            *TRAINING, *TWO_CPU_PROCESSES, "task.max_epochs=1", "keep_last_checkpoint=true", f"output_dir={out}"
        )
    )
    assert (out / "checkpoints" / "last.ckpt").is_file()
    first_child = _ranks(out)[1]["pid"]
    train(compose_cfg(*TRAINING, *TWO_CPU_PROCESSES, f"output_dir={out}"))
    assert _ranks(out)[1]["pid"] != first_child  # new ranks for the rerun
    first, second = sorted(out.glob("metrics/version_*/metrics.csv"))
    epochs = lambda path: sorted({int(r["epoch"]) for r in csv.DictReader(open(path)) if r.get("val/loss")})  # noqa: E731
    assert epochs(first) == [0]
    assert epochs(second) == [1]  # continued, not started over


# A SLURM trial of 2 CPU processes: one job of 2 tasks, 1 CPU each.
SLURM_TRIAL = [
    "launcher=slurm",
    "launcher.cpus_per_trial=2",
    "launcher.memory_gb=null",
    "launcher.timeout_min=15",
    "launcher.parallel_trials=1",
    "hydra.sweeper.n_trials=1",
    "hydra.sweeper.repeats=0",
]


@pytest.mark.cluster
@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_a_two_process_trial_on_a_cluster(launcher, request, run_cli, one_process, tmp_path):
    """Ray: the task's process is rank 0 and starts rank 1. SLURM: srun starts both ranks as the
    job's 2 tasks, and the trial's value is the first task's."""
    if launcher == "ray":
        address = request.getfixturevalue("ray_cluster")
        launch = ["launcher=ray", f"launcher.address={address}", "launcher.cpus_per_trial=2"]
        launch += ["launcher.parallel_trials=1", "hydra.sweeper.n_trials=1"]
    else:
        request.getfixturevalue("slurm_cluster")
        launch = SLURM_TRIAL
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *TRAINING,
        *TWO_CPU_PROCESSES,
        *launch,
        "hydra/sweeper/pruner=none",
        "search_space=none",  # the trial runs the config as composed, as the 1-process run does
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_rank_zero_alone_tracked_and_reported(tmp_path, sweep, "COMPLETE", epochs=2)
    (study,) = studies(sweep).values()
    _assert_matches_one_process(study.trials[0].value, _job_dir(sweep), one_process)
    _ranks(_job_dir(sweep), started_by="srun" if launcher == "slurm" else "rank 0")


@pytest.mark.cluster
def test_a_pruned_two_process_trial_as_a_slurm_job_leaves_no_process(slurm_cluster, run_cli, tmp_path):
    """Rank 0 decides the prune at epoch 1 and broadcasts it: both ranks stop there, the job ends."""
    sweep, configs = tmp_path / "sweep", tmp_path / "configs"
    (configs / "hydra" / "sweeper" / "pruner").mkdir(parents=True)
    (configs / "hydra" / "sweeper" / "pruner" / "at_epoch_1.yaml").write_text(PRUNE_AT_EPOCH_1)
    result = run_cli(
        "-m",
        *TRAINING,
        "task.max_epochs=4",
        "task.patience=4",
        *TWO_CPU_PROCESSES,
        *SLURM_TRIAL,
        f"hydra.searchpath=[file://{configs}]",
        "hydra/sweeper/pruner=at_epoch_1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_rank_zero_alone_tracked_and_reported(tmp_path, sweep, "PRUNED", epochs=2)
    ranks = _ranks(_job_dir(sweep), started_by="srun")
    assert not alive(ranks[0]["pid"])  # the job's first task (rank 0) ended too


@pytest.mark.parametrize(
    "launcher",
    [
        "launcher=local",
        pytest.param("launcher=slurm", marks=pytest.mark.cluster),
        pytest.param("launcher=ray", marks=pytest.mark.cluster),
    ],
)
def test_more_gpus_per_trial_than_a_node_has_is_refused_before_launch(launcher, run_cli, request, tmp_path):
    """The test machine and both test clusters have no GPU: 2 GPUs per trial is a sentence, before launch."""
    if launcher == "launcher=slurm":
        request.getfixturevalue("slurm_cluster")
    extra = [f"launcher.address={request.getfixturevalue('ray_cluster')}"] if launcher == "launcher=ray" else []
    result = run_cli(
        "-m", "task=synthetic_cls", launcher, *extra, "launcher.gpus_per_trial=2", f"hydra.sweep.dir={tmp_path}/s"
    )
    assert result.returncode != 0
    assert "bench: error:" in result.stderr and "gpus_per_trial" in result.stderr, result.stderr[-2000:]
    assert "2 GPU" in result.stderr or "gpus_per_trial=2" in result.stderr
    assert not list((tmp_path / "s").rglob("ranks"))  # nothing trained


def test_the_ranks_srun_started_are_taken_only_where_the_launcher_says_so(monkeypatch, tmp_path):
    """A SLURM job of 2 tasks: the second task trains as a child rank; a job of 1 task, a launcher
    that starts its own ranks, or a task count other than the trial's processes are not taken."""
    from bench import ddp
    from bench.errors import ConfigError

    slurm = _compose(*TWO_CPU_PROCESSES, "launcher=slurm")
    ray = _compose(*TWO_CPU_PROCESSES, "launcher=ray")
    monkeypatch.delenv(ddp.WORKER_ENV, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")  # as --ntasks-per-node (tasks_per_node) sets it
    assert ddp.srun_ranks(ray) == 0 and not ddp.adopt_srun_rank(ray)
    assert not ddp.is_child_rank()
    assert ddp.srun_ranks(slurm) == 2 and ddp.adopt_srun_rank(slurm)
    assert ddp.is_child_rank()
    assert type(ddp.trainer_setup(slurm, tmp_path, 2)["plugins"][0]).__name__ == "SLURMEnvironment"
    with pytest.raises(ConfigError, match="has 2 tasks but its trial trains with 4 processes"):
        ddp.trainer_setup(slurm, tmp_path, 4)
    monkeypatch.delenv(ddp.WORKER_ENV)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert ddp.srun_ranks(slurm) == 0 and not ddp.adopt_srun_rank(slurm)
