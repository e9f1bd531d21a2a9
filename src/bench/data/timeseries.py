"""GEO-Bench-2's multi-temporal datasets (pastis, dynamic_earthnet, biomassters) as time series.

geobench_v2 0.9 resizes every sample to `img_size` inside the dataset, before it turns the
(T, C, H, W) series into (C, T, H, W), with the transform its datamodule's
setup_image_size_transforms() returns. Two of those break a time series:

* GeoBenchSegmentationDataModule's (pastis, biomassters): kornia's
  AugmentationSequential(Resize(keepdim=True), data_keys=None). kornia takes the (T, C, H, W) image
  as a batch of T images (right for the image) and gives the mask that batch too: an (H, W) mask
  comes back (T, H, W), so batches hold (B, T, H, W) masks, which geobench_v2's own
  MultiTemporalSegmentationAugmentation ("Mask does not contain the expected dimensions") and
  TerraTorch's losses refuse.
* DynamicEarthNet's TimeSeriesResize keeps the mask's shape but resizes it bilinearly, then casts
  it to integers: at an edge between classes 1 and 5 it invents classes 2-4.

PerDateResize replaces them: each date of each image is resized on its own exactly as kornia's
Resize resizes a single-date sample (bilinear, align_corners=True, so a series and a one-date task
see the same pixels), and the mask once, by nearest neighbour, keeping its shape and dtype (class
ids stay class ids, a regression target keeps measured values, as kornia treats every "mask"). The
datamodules below are geobench_v2's own with that one method replaced; a task file names one as
`datamodule.cls.path`, so composing a config imports none of this (nor torch).
"""

from __future__ import annotations

import torch.nn.functional as F
from geobench_v2.datamodules import (
    GeoBenchBioMasstersDataModule,
    GeoBenchDynamicEarthNetDataModule,
    GeoBenchPASTISDataModule,
)
from torch import Tensor, nn


class PerDateResize(nn.Module):
    """Resize one sample's images ("image*": (C, H, W) or (T, C, H, W)) and its "mask" ((H, W) or
    (1, H, W)) to size x size; every other key passes unchanged."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = (int(size), int(size))

    def forward(self, sample: dict[str, Tensor]) -> dict[str, Tensor]:
        out = dict(sample)
        for key, value in sample.items():
            if key.startswith("image"):
                out[key] = self._image(key, value)
            elif key == "mask":
                out[key] = self._mask(value)
        return out

    def _image(self, key: str, image: Tensor) -> Tensor:
        if image.dim() not in (3, 4):
            raise ValueError(f"PerDateResize: {key} has shape {tuple(image.shape)}; expected (C, H, W) or (T, C, H, W)")
        if tuple(image.shape[-2:]) == self.size:
            return image
        # (T, C, H, W): the dates are the batch, each resized alone, as kornia does a (C, H, W) sample.
        batch = image if image.dim() == 4 else image[None]
        resized = F.interpolate(batch.float(), size=self.size, mode="bilinear", align_corners=True)
        return resized if image.dim() == 4 else resized[0]

    def _mask(self, mask: Tensor) -> Tensor:
        if mask.dim() not in (2, 3):
            raise ValueError(f"PerDateResize: mask has shape {tuple(mask.shape)}; expected (H, W) or (1, H, W)")
        if tuple(mask.shape[-2:]) == self.size:
            return mask
        # One mask per sample, whatever the number of dates: no T axis is added.
        batch = mask.reshape(1, -1, *mask.shape[-2:]).float()
        resized = F.interpolate(batch, size=self.size, mode="nearest")
        return resized.reshape(*mask.shape[:-2], *self.size).to(mask.dtype)


class _ResizedPerDate:
    """Mixin: geobench_v2's per-sample resize for train, validation and test becomes PerDateResize."""

    img_size: int

    def setup_image_size_transforms(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return PerDateResize(self.img_size), PerDateResize(self.img_size), PerDateResize(self.img_size)


class PASTISDataModule(_ResizedPerDate, GeoBenchPASTISDataModule):
    """geobench_v2's PASTIS datamodule, its series resized by PerDateResize."""


class DynamicEarthNetDataModule(_ResizedPerDate, GeoBenchDynamicEarthNetDataModule):
    """geobench_v2's DynamicEarthNet datamodule, its series resized by PerDateResize."""


class BioMasstersDataModule(_ResizedPerDate, GeoBenchBioMasstersDataModule):
    """geobench_v2's BioMassters datamodule, its series resized by PerDateResize."""


__all__ = ["PerDateResize", "PASTISDataModule", "DynamicEarthNetDataModule", "BioMasstersDataModule"]
