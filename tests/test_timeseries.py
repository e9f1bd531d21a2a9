"""GEO-Bench-2's multi-temporal tasks (pastis, dynamic_earthnet, biomassters) train on real time series:
batches (B, C, T, H, W) with T = task.num_frames and one (B, H, W) mask, through bench.data.timeseries,
whose per-sample resize replaces geobench_v2 0.9's (which gives the mask the series' T axis, or, for
DynamicEarthNet, interpolates class ids)."""

from __future__ import annotations

import pytest

from tests.formats.check import ONE_STEP, check_task_reads, load_batch
from tests.formats.geobench_v2 import write_pastis
from tests.formats.geobench_v2_temporal import write_biomassters, write_dynamic_earthnet

pytestmark = pytest.mark.duration(40)

SIZE = 24  # resized from 16 px samples: every pixel of the output is interpolated, none copied


def _sample(mask_shape, mask_dtype, dates=6, bands=4, key="image"):
    """A series as the geobench_v2 datasets hand it to their per-sample transform: the image (T, C, H, W),
    the mask (H, W) or (1, H, W) holding two classes, 1 left and 5 right (an edge to interpolate over)."""
    import torch

    image = torch.rand(dates, bands, 16, 16)
    mask = torch.ones(16, 16)
    mask[:, 8:] = 5
    return {key: image, "mask": mask.reshape(mask_shape).to(mask_dtype)}


# Each datamodule class with the sample its dataset passes to the transform (datasets/<key>.py,
# __getitem__): the image key, then the mask's shape and dtype.
DATAMODULES = {
    "PASTISDataModule": ("image_s2", (16, 16), "long"),
    "DynamicEarthNetDataModule": ("image_planet", (1, 16, 16), "long"),
    "BioMasstersDataModule": ("image_s2", (1, 16, 16), "float32"),
}


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_each_datamodule_resizes_a_series_keeping_one_mask_of_its_classes(name):
    """The transform each datamodule gives its datasets (train, validation and test) resizes every date
    and leaves the mask its own shape and values: without bench's fix, PASTIS's and BioMassters' masks
    come back with a T axis, DynamicEarthNet's with class 4 invented along the 1|5 edge."""
    import torch

    from bench.data import timeseries

    image_key, mask_shape, mask_dtype = DATAMODULES[name]
    sample = _sample(mask_shape, getattr(torch, mask_dtype), key=image_key)
    for transform in getattr(timeseries, name)(img_size=SIZE, root="unused").setup_image_size_transforms():
        out = transform(dict(sample))
        assert tuple(out[image_key].shape) == (6, 4, SIZE, SIZE), tuple(out[image_key].shape)
        assert tuple(out["mask"].shape) == (*mask_shape[:-2], SIZE, SIZE), tuple(out["mask"].shape)
        assert out["mask"].dtype == sample["mask"].dtype
        assert set(out["mask"].unique().tolist()) == {1, 5}, out["mask"].unique().tolist()
        # Each date is resized alone, exactly as a one-date (C, H, W) sample is.
        alone = transform({image_key: sample[image_key][2]})[image_key]
        assert torch.allclose(out[image_key][2], alone)


def test_geobench_v2_own_resize_still_gives_the_mask_a_time_axis():
    """Why bench replaces it: geobench_v2 0.9's per-sample resize (kornia's Resize on the whole sample)
    treats the (T, C, H, W) image as a batch of T and broadcasts the (H, W) mask to it. When this fails,
    geobench_v2 has fixed it and bench.data.timeseries may go."""
    import torch
    from geobench_v2.datamodules import GeoBenchPASTISDataModule

    transform = GeoBenchPASTISDataModule(img_size=SIZE, root="unused").setup_image_size_transforms()[0]
    out = transform(_sample((16, 16), torch.long, key="image_s2"))
    assert tuple(out["mask"].shape) != (SIZE, SIZE)


SERIES = {
    "gb2_pastis": write_pastis,
    "gb2_dynamic_earthnet": write_dynamic_earthnet,
    "gb2_biomassters": write_biomassters,
}
# The whole-benchmark test runs on tiny tiles; the fixtures' are 32-64 px, so this also downsamples.
TINY = ("task.image_size=32", "task.datamodule.num_workers=0")


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(SERIES))
def test_time_series_task_trains_on_series(task, tmp_path, monkeypatch, compose_cfg):
    """The batch is (B, C, T, H, W), T = task.num_frames > 1, with one (B, H, W) mask; geobench_v2's
    multi-temporal augmentation (applied to every training batch) takes it; one step trains, validates
    and tests (val and test metric logged) at task.image_size=32."""
    import torch

    root = tmp_path / "geobench_v2"
    SERIES[task](root)
    monkeypatch.setenv("GEO_BENCH_V2_DIR", str(root))
    cfg = compose_cfg(f"task={task}", *ONE_STEP, *TINY)
    frames = cfg.task.num_frames
    assert frames > 1 and "temporal_aggregation" not in cfg.task.datamodule

    datamodule, batch = load_batch(cfg)
    assert tuple(batch["image"].shape) == (2, len(cfg.task.bands), frames, 32, 32), tuple(batch["image"].shape)
    assert tuple(batch["mask"].shape) == (2, 32, 32), tuple(batch["mask"].shape)
    regression = cfg.task.type == "regression"
    assert batch["mask"].dtype == (torch.float32 if regression else torch.int64)
    if not regression:
        assert 0 <= int(batch["mask"].min()) and int(batch["mask"].max()) < cfg.task.num_classes

    augmented = datamodule._valid_attribute("train_augmentations")(dict(batch))
    assert augmented["image"].shape == batch["image"].shape and augmented["mask"].shape == batch["mask"].shape

    result = check_task_reads(compose_cfg, task, *TINY)
    assert result["value"] >= 0 and result["test_value"] >= 0
    # TerraTorch logged the task's metric on the test split under its own name (test/mIoU, test/RMSE).
    assert cfg.task.metric.replace("val/", "test/", 1) in result, sorted(k for k in result if k.startswith("test/"))


@pytest.mark.slow
def test_pastis_median_reads_the_same_files_as_one_image(tmp_path, monkeypatch, compose_cfg):
    """gb2_pastis_median: the same PASTIS files, each series reduced to its median, (B, C, H, W)."""
    root = tmp_path / "geobench_v2"
    write_pastis(root)
    monkeypatch.setenv("GEO_BENCH_V2_DIR", str(root))
    cfg = compose_cfg("task=gb2_pastis_median", *ONE_STEP, *TINY)
    assert cfg.task.name == "pastis_median" and cfg.task.num_frames == 1
    _, batch = load_batch(cfg)
    assert tuple(batch["image"].shape) == (2, len(cfg.task.bands), 32, 32)
    assert tuple(batch["mask"].shape) == (2, 32, 32)
    check_task_reads(compose_cfg, "gb2_pastis_median", *TINY)
