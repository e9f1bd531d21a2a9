"""Instance targets that agree with their masks after geobench_v2 (0.9) resizes a sample.

GeoBenchPASTIS in instance mode (GEO-Bench-2's pastis_r) gives each parcel a binary mask, a box and a
label. The datamodule's per-sample resize (kornia) scales every mask to the task's image size but not
the `boxes` key (kornia knows only bbox_xyxy), so away from PASTIS's native 128 px each box misses its
mask: Mask R-CNN would learn and be scored on boxes that frame the wrong pixels. `BoxesFromMasks`
wraps the dataset's own collate_fn and derives each box again from its resized mask, with the
dataset's own rule (GeoBenchPASTIS._load_instance_targets: the mask's extreme pixels, inclusive; one
pixel more where that gives no width or height). An instance the resize shrank to nothing is dropped
with its label, as a box of it would have no pixel to frame.

Referenced from conf/task/gb2_pastis_r.yaml as the datamodule's collate_fn (a _target_, instantiated
at train time only: composing the config imports nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


class BoxesFromMasks:
    """A DataLoader collate_fn: the dataset's own (`path`, a dotted name), then each sample's boxes
    recomputed from its masks. Fields as the task reads them (ObjectDetectionTask's *_field)."""

    def __init__(self, path: str, masks: str = "mask", boxes: str = "boxes", labels: str = "label") -> None:
        self.path, self.masks, self.boxes, self.labels = path, masks, boxes, labels

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from hydra.utils import get_method

        batch = get_method(self.path)(samples)
        for i, masks in enumerate(batch[self.masks]):
            kept = masks.flatten(1).any(dim=1)
            batch[self.masks][i] = masks[kept]
            batch[self.labels][i] = batch[self.labels][i][kept]
            batch[self.boxes][i] = boxes_of(masks[kept])
        return batch

    def __repr__(self) -> str:
        return f"BoxesFromMasks(path={self.path!r})"


def boxes_of(masks: Tensor) -> Tensor:
    """(N, H, W) binary masks -> (N, 4) float boxes x1, y1, x2, y2, as GeoBenchPASTIS draws them."""
    import torch
    from torchvision.ops import masks_to_boxes

    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.float)
    boxes = masks_to_boxes(masks).to(torch.float)
    for low, high in ((0, 2), (1, 3)):  # a box one pixel wide or high gets one more, as the dataset does
        flat = boxes[:, high] == boxes[:, low]
        boxes[flat, high] += 1
    return boxes
