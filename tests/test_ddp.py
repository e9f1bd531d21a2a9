"""Multi-process trials (bench.ddp): one trial trained by 2 processes on CPU (gloo), in this process
(the local launcher), as a Ray task of the test cluster and as a SLURM job of the test cluster.

What every run asserts: 2 ranks really trained (ranks/<rank>.json: world size 2, two distinct PIDs),
rank 0 alone tracked (one MLflow trial run, tagged bench.world_size=2) and reported (one Optuna
intermediate value per epoch), and no child rank is left running after the trial, pruned or not.

The metric: 2 processes load 4 tiles each (the global batch stays batch_size=8) and DDP averages
their gradients, so one step sees the same number of tiles as a 1-process step, but not the same
tiles (DistributedSampler shuffles with its own generator). On the 16 validation tiles of
synthetic_cls that is worth a few tiles after 2 epochs, so the 2-process best value must be within
TOLERANCE of the 1-process one; both must also have learned something (above chance, 1/3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from bench.paths import CONFIG_DIR
from tests.helpers import alive, studies, tree

pytestmark = [pytest.mark.slow, pytest.mark.duration(300)]

TOLERANCE = 0.35  # best val/Accuracy, 2 processes vs 1 (see the module docstring)
TRAINING = ["task=synthetic_cls", "task.max_epochs=2", "task.patience=2", "hparams.lr=1e-3", "seed=0"]
TWO_CPU_PROCESSES = ["launcher.gpus_per_trial=0", "+launcher.processes_per_trial=2"]
# Prunes every trial at its second report (epoch 1): the value can never reach 2.
PRUNE_AT_EPOCH_1 = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0,n_warmup_steps:1}"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def one_process_value(data_dir, tmp_path_factory) -> float:
    from bench.train import train

    out = tmp_path_factory.mktemp("one_process")
    value = train(_compose(*TRAINING, "launcher.gpus_per_trial=0", f"data_dir={data_dir}", f"output_dir={out}"))
    assert isinstance(value, float) and value > 0.34, value
    return value


def _ranks(job_dir: Path) -> list[dict]:
    """What each rank wrote as it started fitting; every child rank gone."""
    ranks = sorted((json.loads(p.read_text()) for p in job_dir.glob("ranks/*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)], ranks
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


def test_two_processes_in_this_process_match_one_within_tolerance(compose_cfg, one_process_value, tmp_path):
    """The local launcher's path: train() in this process is rank 0 and starts rank 1."""
    from bench.train import train

    value = train(compose_cfg(*TRAINING, *TWO_CPU_PROCESSES, f"output_dir={tmp_path / 'job'}"))
    assert isinstance(value, float) and value > 0.34, value
    assert abs(value - one_process_value) <= TOLERANCE, (value, one_process_value)
    _ranks(tmp_path / "job")
    assert (tmp_path / "job" / "checkpoints" / "best.ckpt").is_file()  # written once, by rank 0


def test_a_two_process_trial_as_a_ray_task(ray_cluster, run_cli, one_process_value, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *TRAINING,
        *TWO_CPU_PROCESSES,
        "launcher=ray",
        f"launcher.address={ray_cluster}",
        "launcher.cpus_per_trial=2",
        "launcher.parallel_trials=1",
        "hydra.sweeper.n_trials=1",
        "hydra/sweeper/pruner=none",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_rank_zero_alone_tracked_and_reported(tmp_path, sweep, "COMPLETE", epochs=2)
    (study,) = studies(sweep).values()
    assert abs(study.trials[0].value - one_process_value) <= TOLERANCE, (study.trials[0].value, one_process_value)
    _ranks(_job_dir(sweep))


def test_a_pruned_two_process_trial_as_a_slurm_job_leaves_no_process(slurm_cluster, run_cli, tmp_path):
    """Rank 0 decides the prune at epoch 1 and broadcasts it: both ranks stop there, the job ends."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *TRAINING,
        "task.max_epochs=4",
        "task.patience=4",
        *TWO_CPU_PROCESSES,
        "launcher=slurm",
        "launcher.cpus_per_trial=2",
        "launcher.memory_gb=null",
        "launcher.timeout_min=15",
        "launcher.parallel_trials=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.repeats=0",
        PRUNE_AT_EPOCH_1,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_rank_zero_alone_tracked_and_reported(tmp_path, sweep, "PRUNED", epochs=2)
    ranks = _ranks(_job_dir(sweep))
    assert not alive(ranks[0]["pid"])  # the job's own process (rank 0) ended too


@pytest.mark.parametrize("launcher", ["launcher=local", "launcher=slurm", "launcher=ray"])
def test_more_gpus_per_trial_than_a_node_has_is_refused_before_launch(launcher, run_cli, request, tmp_path):
    """The test machine and both test clusters have no GPU: 2 GPUs per trial is a sentence, before launch."""
    if launcher == "launcher=slurm":
        request.getfixturevalue("slurm_cluster")
    extra = [f"launcher.address={request.getfixturevalue('ray_cluster')}"] if launcher == "launcher=ray" else []
    result = run_cli("-m", "task=synthetic_cls", launcher, *extra, "launcher.gpus_per_trial=2", f"hydra.sweep.dir={tmp_path}/s")
    assert result.returncode != 0
    assert "bench: error:" in result.stderr and "gpus_per_trial" in result.stderr, result.stderr[-2000:]
    assert "2 GPU" in result.stderr or "gpus_per_trial=2" in result.stderr
    assert not list((tmp_path / "s").rglob("ranks"))  # nothing trained
