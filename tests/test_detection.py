"""Object detection (Faster R-CNN) and instance segmentation (Mask R-CNN): TerraTorch's ObjectDetectionTask, the
framework following the task type, the metrics named as it logs them (val_map, test_map), every catalog model that
claims the types building its necks into a detector that trains and predicts, and a model that does not claim them
refused before anything is launched."""

from __future__ import annotations

import re

import pytest

from bench.convert.catalog import load_option
from bench.errors import ConfigError
from bench.evaluation import same_samples
from bench.spec import TASK_TYPES, build_spec
from tests.conftest import group_options

pytestmark = pytest.mark.duration(90)

DETECTION_TYPES = ("object_detection", "instance_segmentation")
# An RGB task and a Sentinel-2 instance task on their RGB bands, which every catalog model can take.
TASK_OF_TYPE = {
    "object_detection": ["task=gb2_everwatch"],
    "instance_segmentation": ["task=gb2_substation", "task.bands=[B02,B03,B04]"],
}
# 64 px: small enough for CPU, and a size every model builds for (DOFA and Clay fix theirs from task.image_size).
SIZE = 64


def _catalog_claims(task_type: str) -> list[str]:
    """The catalog's models whose file has an entry for this type, read from the YAML (no compose at collection)."""

    return [m for m in group_options("model") if task_type in (load_option("model", m).get("task_types") or {})]


@pytest.mark.parametrize(
    "task_type, task, metric, test_metric",
    [
        ("object_detection", "gb2_everwatch", "val_map", "test_map"),
        ("object_detection", "gb2_nzcattle", "val_map", "test_map"),
        ("instance_segmentation", "gb2_substation", "val_segm_map", "test_segm_map"),
        ("instance_segmentation", "gb2_pastis_r", "val_segm_map", "test_segm_map"),
    ],
)
def test_detection_tasks_train_the_framework_of_their_type(compose_cfg, task_type, task, metric, test_metric):
    spec = build_spec(compose_cfg("model=prithvi_tiny", f"task={task}"))
    assert spec.task_class == "terratorch.tasks.ObjectDetectionTask"
    assert spec.task_kwargs["model_factory"] == "ObjectDetectionModelFactory"
    assert (
        spec.task_kwargs["model_args"]["framework"]
        == {"object_detection": "faster-rcnn", "instance_segmentation": "mask-rcnn"}[task_type]
    )
    assert (spec.metric, spec.test_metric, spec.mode) == (metric, test_metric, "max")
    # GEO-Bench-2 records no patience for these: never stop early (patience = every epoch).
    assert spec.patience == spec.max_epochs
    # SemanticSegmentationTask's arguments, which ObjectDetectionTask refuses, are not passed.
    assert not {"loss", "plot_on_val"} & set(spec.task_kwargs)
    assert spec.datamodule["_target_"] == "terratorch.datamodules.GeoBenchV2ObjectDetectionDataModule"


def test_pixelwise_tasks_keep_their_factory_and_slash_metrics(compose_cfg):
    spec = build_spec(compose_cfg("model=prithvi_tiny", "task=gb2_burn_scars"))
    assert (
        spec.task_kwargs["model_factory"] == "EncoderDecoderFactory"
        and "framework" not in spec.task_kwargs["model_args"]
    )
    assert (spec.metric, spec.test_metric) == ("val/mIoU", "test/mIoU")


def test_a_detection_metric_without_the_validation_prefix_is_refused(compose_cfg):
    with pytest.raises(
        ConfigError, match=r"task.metric='val/map' is not a TerraTorch validation metric \(val_<name>\)"
    ):
        build_spec(compose_cfg("model=prithvi_tiny", "task=gb2_everwatch", "task.metric=val/map"))


def test_detection_val_and_test_are_the_same_samples_only_on_informative_equal_scores():
    detection = TASK_TYPES["object_detection"].stages
    val = {"val_map": 0.4321, "val_map_50": 0.61, "val_mar_100": 0.5}
    test = {k.replace("val_", "test_"): v for k, v in val.items()}
    assert same_samples(val, test, detection)
    assert not same_samples(val, {**test, "test_map": 0.4322}, detection)
    # An untrained detector scores 0 (or -1: no such object) everywhere, on any two splits.
    blank = {"val_map": 0.0, "val_map_50": 0.0, "val_mar_100": -1.0}
    assert not same_samples(blank, {k.replace("val_", "test_"): v for k, v in blank.items()}, detection)
    # The pixelwise rule is unchanged: the loss must be among the equal metrics.
    assert not same_samples(val, test)


def test_every_catalog_model_claims_both_detection_types_or_neither():
    od, inst = _catalog_claims("object_detection"), _catalog_claims("instance_segmentation")
    assert od == inst and "prithvi_tiny" in od


def _forward(spec, bands: int):
    """The task built with random weights; one training step's losses and one prediction on a random batch of 2
    tiles with two boxes (and masks) each."""
    import importlib

    import torch

    module, name = spec.task_class.rsplit(".", 1)
    task = getattr(importlib.import_module(module), name)(**spec.task_kwargs)
    torch.manual_seed(0)
    x = torch.randn(2, bands, SIZE, SIZE)
    boxes = torch.tensor([[4.0, 4.0, 30.0, 28.0], [20.0, 24.0, 60.0, 62.0]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 1])}
    if spec.task_kwargs["model_args"]["framework"] == "mask-rcnn":
        masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
        masks[0, 4:28, 4:30], masks[1, 24:62, 20:60] = 1, 1
        target["masks"] = masks
    task.train()
    losses = task(x, [dict(target), dict(target)]).output
    task.eval()
    with torch.no_grad():
        predictions = task(x).output
    return losses, predictions


# Every model's necks go into Mask R-CNN (a model file's instance_segmentation entry is its object_detection one, so
# this builds both); Faster R-CNN, the same necks without the mask head, on a ViT and a CNN.
HEADS = [(model, "instance_segmentation") for model in _catalog_claims("instance_segmentation")] + [
    (model, "object_detection") for model in ("prithvi_tiny", "resnet50")
]


@pytest.mark.slow
@pytest.mark.parametrize("model, task_type", HEADS)
def test_catalog_detection_heads_build_train_and_predict(compose_cfg, model, task_type):
    import torch

    overrides = [
        f"model={model}",
        *TASK_OF_TYPE[task_type],
        f"task.image_size={SIZE}",
        "model.model_args.backbone_pretrained=false",
    ]
    cfg = compose_cfg(*overrides)
    losses, predictions = _forward(build_spec(cfg), len(cfg.task.bands))
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    if task_type == "instance_segmentation":
        expected.add("loss_mask")
    assert set(losses) == expected, (model, sorted(losses))
    assert all(torch.isfinite(v) for v in losses.values()), (model, losses)
    assert len(predictions) == 2 and {"boxes", "labels", "scores"} <= set(predictions[0]), (
        model,
        predictions[0].keys(),
    )
    if task_type == "instance_segmentation":
        assert "masks" in predictions[0]


@pytest.mark.parametrize("task_type", DETECTION_TYPES)
def test_a_model_without_a_detection_head_is_refused_before_launch(compose_cfg, task_type):
    from bench.preflight import check_cell

    # Both entries go (the instance one refers to the detection one), as in a model file that has neither.
    cfg = compose_cfg(
        "model=prithvi_tiny",
        *TASK_OF_TYPE[task_type],
        "~model.task_types.instance_segmentation",
        "~model.task_types.object_detection",
    )
    sentence = (
        f"model=prithvi_tiny has no neck and decoder for {task_type} tasks .* Pick another model, or add "
        f"model.task_types.{task_type}"
    )
    with pytest.raises(ConfigError, match=sentence):
        build_spec(cfg)
    # the sweep's check says it too, beside what else the cell lacks (here its data)
    with pytest.raises(ExceptionGroup) as found:
        check_cell(cfg)
    assert any(isinstance(e, ConfigError) and re.search(sentence, str(e)) for e in found.value.exceptions)


# The smallest tile every detection task trains, validates and tests on (the whole-benchmark test's tiny images):
# a ViT's 2x2 tokens at 32 px still make LearnedInterpolateToPyramidal's 8..1 px pyramid.
TINY = 32


@pytest.mark.slow
@pytest.mark.parametrize("key", ["everwatch", "nzcattle", "substation", "pastis_r"])
def test_detection_tasks_train_on_tiny_tiles(key, tmp_path, monkeypatch, compose_cfg):
    from tests.formats.check import check_task_reads
    from tests.formats.geobench_v2_detection import WRITERS

    WRITERS[key](tmp_path / "geobench_v2")
    monkeypatch.setenv("GEO_BENCH_V2_DIR", str(tmp_path / "geobench_v2"))
    result = check_task_reads(compose_cfg, f"gb2_{key}", f"task.image_size={TINY}", "task.datamodule.num_workers=0")
    metric = "test_segm_map" if key in ("substation", "pastis_r") else "test_map"
    assert result["test_value"] == result[metric]
