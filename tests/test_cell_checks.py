"""A task, its metric, a model and the protocol that do not fit together are refused with a sentence
by build_spec (so in the sweep's driver, before anything is launched); protocol=frozen really
freezes the encoder and is recorded as `frozen`."""

from __future__ import annotations

import pytest

from bench.errors import ConfigError
from bench.spec import build_spec

pytestmark = pytest.mark.duration(65)


def refusal(compose_cfg, *overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_spec(compose_cfg(*overrides))
    return str(caught.value)


@pytest.mark.parametrize("metric", ["val/mIoU", "val/Accuracy_Micro", "val/Multilabel_F1_Score", "val_map"])
def test_a_regression_task_given_another_types_metric_is_refused(compose_cfg, metric):
    said = refusal(
        compose_cfg,
        "task=synthetic_seg",
        "task.type=regression",
        "task.num_classes=null",
        f"task.metric={metric}",
        "task.direction=maximize",
    )
    assert f"task.metric={metric!r}" in said and "regression tasks never log" in said and "val/RMSE" in said


def test_a_regression_metric_on_a_regression_task_is_taken(compose_cfg):
    spec = build_spec(
        compose_cfg(
            "task=synthetic_seg",
            "task.type=regression",
            "task.num_classes=null",
            "task.metric=val/RMSE",
            "task.direction=minimize",
        )
    )
    assert (spec.metric, spec.test_metric, spec.mode) == ("val/RMSE", "test/RMSE", "min")


def test_a_metric_bench_does_not_know_is_left_to_the_job(compose_cfg):
    """A per-class IoU is logged (IoU_<class>) but listed nowhere: only the job can tell."""
    assert build_spec(compose_cfg("task=synthetic_seg", "task.metric=val/IoU_1")).metric == "val/IoU_1"


def test_a_time_series_on_a_model_without_a_temporal_wrapper_is_refused(compose_cfg):
    # SMP's factory builds its own encoder: TerraTorch's TemporalWrapper is not applied to it.
    said = refusal(compose_cfg, "task=gb2_kuro_siwo", "model=resnet50", "model.model_factory=SMPModelFactory")
    assert "time series of 3 frames" in said and "model=resnet50 takes single images" in said
    assert "SMPModelFactory has no temporal wrapper" in said
    # A model file may also say it takes no time series.
    said = refusal(compose_cfg, "task=gb2_kuro_siwo", "model=resnet50", "+model.temporal_args=null")
    assert "temporal_args: null" in said


def test_a_time_series_gets_the_wrapper_or_the_models_own_frames(compose_cfg):
    wrapped = build_spec(compose_cfg("task=gb2_kuro_siwo", "model=resnet50"))
    assert wrapped.task_kwargs["model_args"]["backbone_use_temporal"] is True
    native = build_spec(compose_cfg("task=gb2_kuro_siwo", "model=prithvi_tiny"))
    assert "backbone_use_temporal" not in native.task_kwargs["model_args"]
    assert native.task_kwargs["model_args"]["backbone_num_frames"] == 3


def test_frozen_on_an_encoder_that_cannot_be_frozen_is_refused(compose_cfg):
    said = refusal(compose_cfg, "protocol=frozen", "+model.model_args.peft_config={method: LORA}")
    assert "protocol=frozen" in said and "peft_config" in said
    said = refusal(compose_cfg, "protocol=frozen", "+model.freezable=false")
    assert "model=prithvi_tiny has none to freeze" in said
    build_spec(compose_cfg("+model.model_args.peft_config={method: LORA}"))  # full fine-tuning with PEFT: fine


def test_protocol_frozen_freezes_the_encoder_and_is_recorded(compose_cfg):
    from hydra.utils import get_class

    cfg = compose_cfg("protocol=frozen")
    assert cfg.task.finetuning == "frozen" and compose_cfg().task.finetuning == "full_ft"
    spec = build_spec(cfg)
    task = get_class(spec.task_class)(**spec.task_kwargs)
    encoder = [p.requires_grad for p in task.model.encoder.parameters()]
    decoder = [p.requires_grad for p in task.model.decoder.parameters()]
    assert encoder and not any(encoder) and decoder and all(decoder)
    full = build_spec(compose_cfg())
    assert all(p.requires_grad for p in get_class(full.task_class)(**full.task_kwargs).model.encoder.parameters())


def test_refusals_come_before_a_sweep_launches(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=synthetic_seg",
        "task.type=regression",
        "task.num_classes=null",
        "task.metric=val/mIoU",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode != 0
    assert "regression tasks never log" in result.stderr + result.stdout
    assert not (sweep / "optuna.journal").exists() and not list(sweep.glob("*/"))


@pytest.mark.slow
def test_protocol_frozen_is_recorded_in_the_tables_and_the_scores(run_cli, tmp_path):
    import subprocess
    import sys

    import pandas as pd

    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=synthetic_seg",
        "protocol=frozen",
        "task.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.repeats=1",
        "mlflow.enabled=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for table in ("results.csv", "repeats.csv"):
        assert set(pd.read_csv(sweep / table)["frozen_or_full_ft"]) == {"frozen"}, table
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.report",
            str(sweep),
            "--out",
            str(tmp_path / "report"),
            "--bootstrap",
            "20",
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert set(pd.read_csv(tmp_path / "report" / "scores.csv")["frozen_or_full_ft"]) == {"frozen"}
    # A synthetic task is no leaderboard dataset, so no submission/ (the frozen label reaching one:
    # test_report_merge.py, on burn_scars).
    assert not (tmp_path / "report" / "submission").exists()
