"""The config merge (model < task < hparams) and config validation, without torch."""

from __future__ import annotations

import pytest

from bench.errors import ConfigError
from bench.spec import TASK_TYPES, build_spec


def test_task_settings_override_model_defaults(compose_cfg):
    spec = build_spec(compose_cfg("+model.model_args.num_classes=99"))
    assert spec.task_kwargs["model_args"]["num_classes"] == 2  # the task's value wins


def test_trial_hparams_override_task_and_model(compose_cfg):
    spec = build_spec(
        compose_cfg(
            "+hparams.model_args.num_classes=5",
            "+hparams.model_args.decoder_channels=64",
            "hparams.lr=0.0123",
            "+hparams.loss=dice",
        )
    )
    model_args = spec.task_kwargs["model_args"]
    assert model_args["num_classes"] == 5  # over the task
    assert model_args["decoder_channels"] == 64  # over the model
    assert model_args["backbone"] == "prithvi_eo_tiny"  # untouched model keys survive the merge
    assert model_args["necks"][0]["name"] == "SelectIndices"
    assert spec.task_kwargs["lr"] == 0.0123
    assert spec.task_kwargs["loss"] == "dice"  # over task_args


def test_list_valued_hparams_replace_rather_than_merge(compose_cfg):
    spec = build_spec(compose_cfg("model=resnet50", "+hparams.model_args.decoder_channels=[8,8,8,8,8]"))
    assert spec.task_kwargs["model_args"]["decoder_channels"] == [8, 8, 8, 8, 8]


def test_batch_size_goes_to_the_datamodule_only(compose_cfg):
    spec = build_spec(compose_cfg("hparams.batch_size=32"))
    assert spec.datamodule["batch_size"] == 32
    assert "batch_size" not in spec.task_kwargs


def test_model_reads_bands_from_the_task(compose_cfg):
    spec = build_spec(compose_cfg("task=chesapeake", "model=prithvi"))
    assert spec.task_kwargs["model_args"]["backbone_bands"] == ["BLUE", "GREEN", "NIR_NARROW", "RED"]
    spec = build_spec(compose_cfg("task=chesapeake", "model=resnet50"))
    assert spec.task_kwargs["model_args"]["backbone_in_chans"] == 4


def test_metric_direction_and_budget_come_from_the_task(compose_cfg):
    spec = build_spec(compose_cfg("task=synthetic_cls", "task.direction=minimize", "task.metric=val/loss"))
    assert (spec.metric, spec.mode, spec.max_epochs) == ("val/loss", "min", 10)


def test_unknown_direction_is_rejected(compose_cfg):
    with pytest.raises(
        ConfigError, match=r"task.direction='maximise' is not a direction; use one of \['maximize', 'minimize'\]"
    ):
        build_spec(compose_cfg("task.direction=maximise"))


def test_task_type_without_terratorch_class_is_rejected(compose_cfg):
    with pytest.raises(ConfigError, match="task.type='object_counting' has no TerraTorch task class") as info:
        build_spec(compose_cfg("task.type=object_counting"))
    for supported in TASK_TYPES:
        assert supported in str(info.value)


def test_missing_metric_key_is_rejected(compose_cfg):
    with pytest.raises(ConfigError, match="task.metric is not set"):
        build_spec(compose_cfg("task.metric=null"))


@pytest.mark.parametrize(
    "override, key",
    [
        ("hparams.batch_size=0", "hparams.batch_size"),
        ("task.max_epochs=0", "task.max_epochs"),
        ("task.max_epochs=-1", "task.max_epochs"),
        ("task.patience=0", "task.patience"),
        ("hparams.batch_size=8.5", "hparams.batch_size"),
    ],
)
def test_impossible_values_are_refused_naming_the_key(compose_cfg, override, key):
    with pytest.raises(ConfigError, match=rf"^{key}=.* is not possible: .* a whole number of at least 1"):
        build_spec(compose_cfg(override))


def test_no_patience_means_no_early_stopping(compose_cfg):
    assert build_spec(compose_cfg("task.patience=null", "task.max_epochs=7")).patience == 7
