"""bench.data.geobench_v2_fixes: Fields of The World's two windows reach TerraTorch as one (B, C, T=2, H, W)
"image", which geobench_v2 0.9 cannot give (it returns image_a and image_b; its return_stacked_image
raises). Read from the real on-disk format (tests/formats/geobench_v2_pixelwise.py) through the task's
own datamodule config (conf/task/gb2_fotw.yaml)."""

from __future__ import annotations

import pytest
import torch

from bench.data.geobench_v2_fixes import StackTimeSteps
from tests.formats.check import load_batch
from tests.formats.geobench_v2_pixelwise import write_fotw

pytestmark = pytest.mark.duration(25)


def _sample(value: float) -> dict:
    return {
        "image_a": torch.full((4, 8, 8), value),
        "image_b": torch.full((4, 8, 8), value + 100),
        "mask": torch.zeros(8, 8, dtype=torch.long),
    }


def test_stack_time_steps_stacks_the_windows_in_order_on_a_time_axis():
    batch = StackTimeSteps(["image_a", "image_b"])([_sample(1.0), _sample(2.0)])

    assert sorted(batch) == ["image", "mask"]  # the per-date keys are gone
    assert batch["image"].shape == (2, 4, 2, 8, 8)  # (B, C, T, H, W)
    assert torch.equal(batch["image"][:, 0, :, 0, 0], torch.tensor([[1.0, 101.0], [2.0, 102.0]]))
    assert batch["mask"].shape == (2, 8, 8)


def test_stack_time_steps_names_missing_windows():
    with pytest.raises(KeyError, match="image_b"):
        StackTimeSteps(["image_a", "image_b"])([{"image_a": torch.zeros(4, 8, 8), "mask": torch.zeros(8, 8)}])
    with pytest.raises(ValueError):
        StackTimeSteps(["image_a"])


def test_upstream_fotw_cannot_stack_its_windows(tmp_path):
    """Why the fix exists; when geobench_v2 fixes return_stacked_image this fails: revisit gb2_fotw."""
    from geobench_v2.datasets import GeoBenchFieldsOfTheWorld

    write_fotw(tmp_path)
    bands = ["red", "green", "blue", "nir"]
    sample = GeoBenchFieldsOfTheWorld(root=str(tmp_path / "fotw"), split="train", band_order=bands)[0]
    assert "image" not in sample and {"image_a", "image_b"} <= set(sample)
    stacked = GeoBenchFieldsOfTheWorld(
        root=str(tmp_path / "fotw"), split="train", band_order=bands, return_stacked_image=True
    )
    with pytest.raises(AttributeError, match="sample"):
        stacked[0]


@pytest.mark.slow
def test_fotw_task_batches_are_two_date_series_and_augment_alike(tmp_path, monkeypatch, compose_cfg):
    write_fotw(tmp_path / "gb2")
    monkeypatch.setenv("GEO_BENCH_V2_DIR", str(tmp_path / "gb2"))
    cfg = compose_cfg("task=gb2_fotw", "task.image_size=32", "task.datamodule.num_workers=0", "hparams.batch_size=2")
    datamodule, batch = load_batch(cfg)

    assert set(batch) == {"image", "mask"}
    assert batch["image"].shape == (2, 4, cfg.task.num_frames, 32, 32)  # resized per window, then stacked
    assert batch["mask"].shape == (2, 32, 32)
    assert batch["image"].dtype == torch.float32 and batch["mask"].dtype == torch.long

    # The task's training augmentation (flips) must move both dates and the mask alike: give every
    # pixel a unique value, date B = date A + 1000, and the mask = the pixel's row parity.
    h = w = 32
    ramp = torch.arange(h * w, dtype=torch.float32).reshape(h, w)
    image = torch.stack([ramp, ramp + 1000], dim=0).expand(2, 4, 2, h, w).clone()
    mask = (torch.arange(h).reshape(h, 1) % 2).expand(h, w).expand(2, h, w).clone()
    out = datamodule._proxy.train_augmentations({"image": image, "mask": mask})
    assert out["image"].shape == (2, 4, 2, h, w) and out["mask"].shape == (2, h, w)
    assert torch.equal(out["image"][:, :, 1] - out["image"][:, :, 0], torch.full((2, 4, h, w), 1000.0))
    rows = (out["image"][:, 0, 0] // w).long()  # each pixel's original row, after flipping
    assert torch.equal(out["mask"].long(), rows % 2)
