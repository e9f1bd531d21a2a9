"""train() really trains TerraTorch models on the synthetic GeoTIFFs (slow: seconds per test)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bench.errors import MetricNotLoggedError
from bench.train import train

pytestmark = [pytest.mark.slow, pytest.mark.duration(240)]


def _metric_rows(output_dir) -> list[dict]:
    (path,) = output_dir.glob("metrics/version_*/metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["synthetic_seg", "synthetic_cls"])
def test_sensible_training_beats_one_epoch_at_a_tiny_learning_rate(compose_cfg, task, tmp_path):
    untrained = train(
        compose_cfg(f"task={task}", "task.max_epochs=1", "hparams.lr=1e-7", f"output_dir={tmp_path / 'u'}")
    )
    trained = train(
        compose_cfg(
            f"task={task}", "task.max_epochs=4", "task.patience=4", "hparams.lr=1e-3", f"output_dir={tmp_path / 't'}"
        )
    )
    assert math.isfinite(untrained) and math.isfinite(trained)
    assert 0.0 <= untrained <= 1.0 and 0.0 <= trained <= 1.0
    assert trained > untrained + 0.15, (trained, untrained)


def test_calls_in_one_process_are_independent(compose_cfg, tmp_path):
    import torch

    first = train(compose_cfg("task.max_epochs=2", f"output_dir={tmp_path / 'a'}"))
    # A different run in between: other data, model width, learning rate and seed.
    train(
        compose_cfg(
            "task=synthetic_cls",
            "task.max_epochs=1",
            "hparams.lr=1e-2",
            "seed=7",
            "+hparams.model_args.decoder_channels=64",
            f"output_dir={tmp_path / 'b'}",
        )
    )
    again = train(compose_cfg("task.max_epochs=2", f"output_dir={tmp_path / 'c'}"))
    assert again == first
    assert (tmp_path / "c" / "checkpoints" / "best.ckpt").is_file()
    # What a finished job leaves: its best weights only (a third of a full checkpoint's size), no
    # last.ckpt (it only serves a requeued/retried job), and no test metrics unless asked.
    best = torch.load(tmp_path / "a" / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["state_dict"] and "optimizer_states" not in best
    assert not (tmp_path / "a" / "checkpoints" / "last.ckpt").exists()
    logged_names = {name for row in _metric_rows(tmp_path / "a") for name, value in row.items() if value}
    assert "val/mIoU" in logged_names
    assert not any(name.startswith("test/") for name in logged_names)


def test_metric_the_task_never_logs_lists_the_ones_it_does(compose_cfg):
    with pytest.raises(MetricNotLoggedError) as info:
        train(compose_cfg("task.metric=val/mIoU_typo"))
    message = str(info.value)
    assert "task.metric='val/mIoU_typo' is never logged by SemanticSegmentationTask" in message
    assert "val/mIoU" in message and "val/loss" in message


def test_test_split_when_asked_is_evaluated_on_the_best_checkpoint(compose_cfg, tmp_path):
    import lightning.pytorch as pl
    from hydra.utils import instantiate
    from terratorch.tasks import SemanticSegmentationTask

    from bench.spec import build_spec

    # (Without evaluate_test no test metric is logged: see test_calls_in_one_process_are_independent.)
    out = tmp_path / "with_test"
    cfg = compose_cfg("task.max_epochs=3", "evaluate_test=true", f"output_dir={out}")
    returned = train(cfg)
    logged = [row for row in _metric_rows(out) if row.get("test/mIoU")]
    assert len(logged) == 1
    assert returned["test_value"] == returned["test/mIoU"] == pytest.approx(float(logged[0]["test/mIoU"]))
    assert Path(returned["checkpoint"]) == out / "checkpoints" / "best.ckpt"
    # Re-test the saved best checkpoint independently: same number as train() reported.
    spec = build_spec(cfg)
    best = SemanticSegmentationTask.load_from_checkpoint(out / "checkpoints" / "best.ckpt")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (result,) = trainer.test(best, datamodule=instantiate(spec.datamodule, _convert_="all"))
    assert result["test/mIoU"] == pytest.approx(float(logged[0]["test/mIoU"]), abs=1e-6)


@pytest.mark.parametrize(("launcher", "written"), [("local", False), ("slurm", True)])
def test_a_resume_point_is_written_only_where_a_job_can_be_run_again(compose_cfg, tmp_path, launcher, written):
    """SLURM requeues and Ray retries run a job again in its own dir, which resumes from last.ckpt;
    the local launcher never does, and writing it every epoch (3.6 GB for a 300M model) is waste."""
    import json

    reruns = "true" if launcher != "local" else "false"  # what conf/launcher/<launcher>.yaml says
    composed = compose_cfg(f"launcher={launcher}")
    assert str(composed.launcher.reruns_jobs).lower() == reruns
    record, out = tmp_path / "resume_point.jsonl", tmp_path / "job"
    train(
        compose_cfg(
            "task.max_epochs=2",
            f"launcher.reruns_jobs={reruns}",
            f"output_dir={out}",
            "+callbacks.probe._target_=tests.probes.RecordResumePoint",
            f"+callbacks.probe.path={record}",
            f"+callbacks.probe.output_dir={out}",
        )
    )
    # At the start of epoch 1, the resume point of epoch 0 exists where the launcher reruns jobs.
    assert [json.loads(line)["last_ckpt"] for line in record.read_text().splitlines()] == [False, written]
    assert not (out / "checkpoints" / "last.ckpt").exists()  # a finished job drops it either way


def test_a_rerun_job_resumes_from_its_last_checkpoint(compose_cfg, tmp_path):
    """What a SLURM requeue or a Ray retry does: the same job, same output dir, runs again."""
    out = tmp_path / "job"
    # Kept here to stand in for a job killed after epoch 2 (a finished job drops it).
    train(compose_cfg("task.max_epochs=2", "keep_last_checkpoint=true", f"output_dir={out}"))
    assert (out / "checkpoints" / "last.ckpt").is_file()
    train(compose_cfg("task.max_epochs=4", "task.patience=4", f"output_dir={out}"))
    first, second = sorted(out.glob("metrics/version_*/metrics.csv"))
    epochs = lambda path: sorted({int(r["epoch"]) for r in csv.DictReader(open(path)) if r.get("val/mIoU")})  # noqa: E731
    assert epochs(first) == [0, 1]
    assert epochs(second) == [2, 3]  # continued, not started over


def test_a_single_run_logs_every_epoch_into_a_standalone_run_it_closes(run_cli, tmp_path):
    """`python -m bench` without -m: the entry point opens a standalone MLflow run and hands it to
    train() (no global active run); each epoch's metrics arrive, and the run ends with its outcome."""
    from mlflow import MlflowClient

    result = run_cli("task=synthetic_seg", "task.max_epochs=2", "task.patience=2", "hparams.lr=1e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert (run.info.status, run.data.tags["bench.level"], run.data.tags["bench.state"]) == (
        "FINISHED",
        "run",
        "COMPLETE",
    )
    history = client.get_metric_history(run.info.run_id, "val/mIoU")
    assert len(history) == 2  # one point per epoch, all sent
    assert run.data.metrics["objective"] == pytest.approx(max(m.value for m in history))
    assert run.data.tags["bench.checkpoint_path"].endswith("best.ckpt")
    assert float(run.data.params["hparams.lr"]) == 1e-3
    assert {"config.yaml", "overrides.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
