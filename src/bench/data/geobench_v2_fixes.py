"""Work-arounds for geobench_v2 (0.9) datasets whose samples TerraTorch's tasks cannot take as they come.

Fields of The World (fotw): each sample is two Sentinel-2 dates of one season, window A and window
B. geobench_v2's GeoBenchFieldsOfTheWorld returns them as `image_a` and `image_b` and no `image`,
which every TerraTorch task reads; its own way to merge them, return_stacked_image=True, raises
AttributeError ("'GeoBenchFieldsOfTheWorld' object has no attribute 'sample'": it concatenates
`sample[key] for key in self.sample`, an attribute the class never sets). So bench leaves that
flag off and merges the windows when the loader collates a batch: `StackTimeSteps` stacks them
on a time axis, (B, C, T=2, H, W), the layout bench's multi-temporal tasks use (kuro_siwo), so
a temporal backbone sees two dates of the same bands and the task's bands stay the model's bands.

Each sample has already been resized (per key, the same resize for every window and the mask) by
the datamodule before collation, so the windows stack; augmentation runs after, on the batch
(geobench_v2's multi_temporal_default flips every date and the mask alike).

Referenced from conf/task/gb2_fotw.yaml as the datamodule's collate_fn (a _target_, instantiated
at train time only: composing the config imports nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StackTimeSteps:
    """A DataLoader collate_fn: torch's default collation, then the per-date images under `keys`
    (each (B, C, H, W)) stacked, in that order, into `out` as (B, C, T, H, W); the per-date keys
    are dropped so nothing downstream sees the same pixels twice. A class, not a closure, so
    worker processes can pickle it."""

    def __init__(self, keys: Sequence[str], out: str = "image") -> None:
        if len(keys) < 2:
            raise ValueError(f"StackTimeSteps needs at least two per-date keys to stack, got {list(keys)}")
        self.keys = list(keys)
        self.out = out

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from torch.utils.data import default_collate

        batch = default_collate(samples)
        missing = [k for k in self.keys if k not in batch]
        if missing:
            raise KeyError(
                f"StackTimeSteps: the samples have no {', '.join(missing)} (they have "
                f"{', '.join(sorted(batch))}); check the dataset's return_window"
            )
        batch[self.out] = torch.stack([batch.pop(k) for k in self.keys], dim=2)
        return batch

    def __repr__(self) -> str:
        return f"StackTimeSteps(keys={self.keys}, out={self.out!r})"
