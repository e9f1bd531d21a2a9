"""The HLS tasks (Sen1Floods11, HLS burn scars, multi-temporal crop classification) read their real
on-disk format (GeoTIFF chips, named and split as published, written by tests/formats/hls.py)
through TerraTorch's own datamodules, and train, validate and test one step."""

from __future__ import annotations

import pytest

from tests.formats.check import check_task_reads
from tests.formats.hls import ENV_VARS, WRITERS

pytestmark = pytest.mark.duration(25)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(WRITERS))
def test_hls_task_reads_its_format(task, tmp_path, monkeypatch, compose_cfg):
    root = WRITERS[task](tmp_path / task)
    monkeypatch.setenv(ENV_VARS[task], str(root))
    # The written tiles are 64x64 (the real ones 512 or 224); in-process loading keeps it to seconds.
    check_task_reads(compose_cfg, task, "task.image_size=64", "task.datamodule.num_workers=0")


@pytest.mark.slow
def test_a_single_image_model_takes_the_multi_temporal_task_through_the_temporal_wrapper(
    tmp_path, monkeypatch, compose_cfg
):
    """ResNet-50 has no time axis: bench wraps it in TerraTorch's TemporalWrapper for the crop task's
    (B, C, T, H, W) batches, so the cell trains instead of failing at its first batch."""
    from bench.spec import build_spec

    root = WRITERS["crop_classification"](tmp_path / "crop")
    monkeypatch.setenv(ENV_VARS["crop_classification"], str(root))
    overrides = (
        "model=resnet50",
        "model.model_args.backbone_pretrained=false",
        "task.image_size=64",
        "task.datamodule.num_workers=0",
    )
    args = build_spec(compose_cfg("task=crop_classification", *overrides)).task_kwargs["model_args"]
    assert args["backbone_use_temporal"] is True and args["backbone_temporal_pooling"] == "mean"
    assert "backbone_use_temporal" not in build_spec(compose_cfg("task=crop_classification")).task_kwargs["model_args"]
    check_task_reads(compose_cfg, "crop_classification", *overrides)
