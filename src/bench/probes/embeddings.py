"""The embedding pass: the cell's TerraTorch model, its encoder (and neck) in eval mode, run once over a
split, as TerraTorch's EmbeddingGenerationTask does, with the features kept for the probes.

Every split, the training split included, is read with the datamodule's validation transforms and
normalisation: no random augmentation, so the cached features are the same whichever trial reads them
(the probes train on fixed features; a frozen decoder trained with augmentation is protocol=frozen).
What is kept of the encoder's last feature map (after the model's neck, as its decoder would see it):
  - classification, multi-label: its global average over the spatial positions (or tokens): (N, D)
  - segmentation: the map itself, (N, D, h, w) at the encoder's resolution, as float16; the linear head
    is applied there and its logits upsampled bilinearly to the label's size (a 1x1 linear map commutes
    with bilinear upsampling, so this is the per-pixel linear head on upsampled features, at h*w cost).
Imported inside the job only (torch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bench.probes.cache import FEATURES_VERSION, file_identity
from bench.spec import TrialSpec

log = logging.getLogger(__name__)


def key_inputs(
    cfg: DictConfig, spec: TrialSpec, split: str, identity: Callable[[str], Any] = file_identity
) -> dict[str, Any]:
    """What the features of a split depend on, for the cache key: the model's weights (its arguments,
    any local checkpoint file's size and mtime, and for a randomly initialised encoder the seed that drew
    it), the dataset (the datamodule's arguments, every file under its data roots), the split, the
    partition, the held-out validation setting and the preprocessing (the datamodule's transforms)."""
    model_args = dict(spec.task_kwargs.get("model_args", {}))
    pretrained = bool(model_args.get("backbone_pretrained", False))
    files = {}
    for where, value in [*model_args.items(), *spec.datamodule.items()]:
        if isinstance(value, str) and value and ("/" in value or value.startswith("~")):
            files[where] = identity(value)
    datamodule = {k: v for k, v in spec.datamodule.items() if k not in ("batch_size", "num_workers")}
    return {
        "describe": f"model={cfg.model.name} task={spec.task_name} split={split}",
        "model": cfg.model.name,
        "task": spec.task_name,
        "split": split,
        "partition": OmegaConf.select(cfg, "task.partition", default=None),
        "model_factory": spec.task_kwargs.get("model_factory"),
        "model_args": model_args,
        "init_seed": None if pretrained else int(cfg.seed),
        "datamodule": datamodule,
        "heldout": None if spec.heldout is None else [spec.heldout.fraction, spec.heldout.seed],
        "files": files,
        "pooled": spec.task_class.rsplit(".", 1)[1] != "SemanticSegmentationTask",
        "features_code": FEATURES_VERSION,
    }


def build_encoder(cfg: DictConfig, spec: TrialSpec) -> Any:
    """The cell's TerraTorch model, built as a trial builds it (same seed: a randomly initialised encoder
    is the one the fine-tuning trial of that seed starts from)."""
    import lightning.pytorch as pl

    from bench.train import _build_task

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task = _build_task(spec, cfg.model.name)
    model = task.model.eval()
    return model


def datamodule_for_features(spec: TrialSpec) -> Any:
    """The task's datamodule, its training split read with the validation transforms (no augmentation)."""
    from bench.data.heldout import build_datamodule

    datamodule = build_datamodule(spec, int(spec.datamodule["batch_size"]))
    if hasattr(datamodule, "train_transform") and hasattr(datamodule, "val_transform"):
        datamodule.train_transform = datamodule.val_transform
    return datamodule


def compute(model: Any, datamodule: Any, split: str, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one split, in the dataset's order."""
    import torch
    from torch.utils.data import DataLoader

    datamodule.setup("test" if split == "test" else "fit")
    # TerraTorch's GEO-Bench-2 datamodules are proxies: the datasets, collate function and batch
    # augmentations live on the geobench_v2 datamodule they wrap (`_proxy`, as bench.data.heldout reads it).
    source = getattr(datamodule, "_proxy", datamodule)
    dataset = getattr(source, f"{split}_dataset")
    loader = DataLoader(
        dataset,
        batch_size=int(getattr(source, "batch_size", 8) or 8),
        shuffle=False,
        num_workers=int(getattr(source, "num_workers", 0) or 0),
        collate_fn=getattr(source, "collate_fn", None),
    )
    aug = _evaluation_aug(source, split)
    device = next(model.parameters()).device
    features, labels = [], []
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            if aug is not None:
                batch = aug(batch)
            feature = encode(model, batch["image"])
            if pooled:
                feature = feature.float().mean(dim=tuple(range(2, feature.ndim)))
            else:
                feature = feature.half()
            features.append(feature.cpu().numpy())
            labels.append((batch["mask"] if "mask" in batch else batch["label"]).cpu().numpy())
    log.info(
        "embedded the %s split: %d samples, features %s", split, sum(len(f) for f in features), features[0].shape[1:]
    )
    return np.concatenate(features), np.concatenate(labels)


def _evaluation_aug(source: Any, split: str) -> Any:
    """The batch transform a split gets when it is evaluated, never a training augmentation: TerraTorch's
    datamodules keep one per split (`val_aug`, `test_aug`) or one for all (`aug`, normalisation);
    geobench_v2's one for every evaluated split (`eval_augmentations`, applied as its
    on_after_batch_transfer does when the trainer is not training)."""
    named = getattr(source, f"{'val' if split == 'train' else split}_aug", None) or getattr(source, "aug", None)
    return named if named is not None else getattr(source, "eval_augmentations", None)


def encode(model: Any, x: Any) -> Any:
    """The encoder's last feature map after the model's neck: (B, D, h, w), or (B, D, tokens) for a neck
    that leaves tokens (channels first either way)."""
    from terratorch.models.utils import pad_images

    if getattr(model, "patch_size", None) and getattr(model, "padding", None) is not None:
        x = pad_images(x, model.patch_size, model.padding)
    features = model.encoder(x)
    features = model.neck(features, image_size=tuple(x.shape[-2:]))
    last = features[-1] if isinstance(features, (list, tuple)) else features
    if last.ndim == 3:  # (B, tokens, D)
        last = last.transpose(1, 2)
    return last
