"""protocol=frozen on cached encoder features: the encoder runs once per split, the decoder trains on its output.

A frozen encoder's output is a fixed function of the image when the training split is not augmented (the
datamodule's train transforms and augmentations are none, or the same as its validation ones), so a cell's
trials and repeats can share it. Then `cached(...)`, called by train._fit on the trial's freshly built task
and datamodule, returns:
  - a datamodule that yields, per sample, the features in place of the image, read from the embedding cache
    (bench.probes.cache, its own key inputs and FROZEN_VERSION), each split built by the first trial that
    needs it: the encoder (in eval mode) and the leading parameter-free part of the neck (SelectIndices,
    ReshapeTokensToImage, ...), all levels, float32, in the dataset's order; read back with mmap;
  - the same task, whose model runs only the rest: the learnable neck, decoder, head and auxiliary heads,
    then (pixel-wise models) TerraTorch's rescale, squeeze and centre crop, at the image size stored with the
    features. Its modules keep their names, so its checkpoints load into the end-to-end model.
Lightning then trains it exactly as it trains the end-to-end frozen model (same task class, loss, metrics,
early stopping, checkpoint, pruning, OOM retries, test on the best checkpoint). One difference: the encoder
runs in eval mode here, while end-to-end training runs it in train mode (dropout, batch-norm statistics).
Otherwise (augmentation, a model that is not TerraTorch's PixelWiseModel or ScalarOutputModel, k-fold
tuning, embeddings.frozen_features=false) `why_not(...)` says why in a sentence and the cell trains end to end.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bench.probes import frozen_features_off
from bench.probes.cache import job_file_identity
from bench.spec import TrialSpec

log = logging.getLogger(__name__)

FROZEN_VERSION = 1  # bump when what is stored for the frozen layout changes: older entries are rebuilt
MODELS = ("PixelWiseModel", "ScalarOutputModel")  # what EncoderDecoderFactory builds for the tasks bench runs
# model_args that shape only what is trained on the features (decoder, head, neck after the cached part).
_DECODER_SIDE = ("decoder", "head", "aux", "num_classes", "rescale", "necks")


def why_not(cfg: DictConfig, spec: TrialSpec, fold: Any = None) -> str | None:
    """None when this trial's frozen decoder can train on cached features (torch-free), else why not."""
    if not spec.task_kwargs.get("freeze_backbone"):
        return "the encoder is trained (not protocol=frozen)"
    if frozen_features_off(cfg):
        return "embeddings.frozen_features=false"
    if not OmegaConf.select(cfg, "embeddings.cache_dir", default=None):  # frozen by a hparam, not protocol=frozen
        return "embeddings.cache_dir is not set (protocol=frozen sets it)"
    if fold is not None:
        return "k-fold tuning trains on each fold's own samples"
    dm = spec.datamodule
    for key, value in dm.items():
        if key.startswith("train_") and ("transform" in key or "aug" in key) and value is not None:
            rest = key[len("train_") :]
            twin = next((dm[p + rest] for p in ("val_", "eval_") if p + rest in dm), None)
            if value != twin:
                return f"the training split is augmented (task.datamodule.{key} differs from its validation one)"
    return None


def prepare(cfg: DictConfig, spec: TrialSpec, batch_size: int, datamodule: Any, task: Any, fold: Any = None) -> Any:
    """train._fit's hook: (datamodule, task, the features or None). A frozen cell that can train on cached
    features gets them (the task's model then runs from the features on); one that cannot is trained end to
    end, and the log says why in a sentence."""
    if not spec.task_kwargs.get("freeze_backbone"):
        return datamodule, task, None
    why = why_not(cfg, spec, fold)
    if why is None and type(task.model).__name__ not in MODELS:
        why = f"its model is a {type(task.model).__name__}, which bench does not split into encoder and decoder"
    if why is not None:
        log.info("%s: protocol=frozen trains end to end, its encoder features are not cached: %s", spec.task_name, why)
        return datamodule, task, None
    model = task.model
    necks = list(model.neck) if hasattr(model, "neck") else []
    fixed = 0
    while fixed < len(necks) and not any(True for _ in necks[fixed].parameters()):
        fixed += 1  # the leading parameter-free necks run once, with the encoder
    features = _Features(cfg, spec, model, fixed)
    task.model = _on_features(model, fixed, features)
    task.plot_on_val = 0  # TerraTorch plots batch["image"], here features (an attribute of its BaseTask)
    log.info("%s: protocol=frozen trains the decoder on cached encoder features", spec.task_name)
    return _datamodule(features, batch_size), task, features


class _Features:
    """The cached features of each split, built (encoder + fixed necks) only when an entry is missing."""

    def __init__(self, cfg: DictConfig, spec: TrialSpec, model: Any, fixed: int) -> None:
        self.cfg, self.spec, self.model, self.fixed = cfg, spec, model, fixed
        self.entries: dict[str, Any] = {}
        self._source: Any = None
        self._identity = job_file_identity()  # each data root listed once per job, not once per split

    @property
    def source(self) -> Any:
        from bench.probes.embeddings import datamodule_for_features

        if self._source is None:
            self._source = datamodule_for_features(self.spec)
        return self._source

    @property
    def built(self) -> int:
        return sum(entry.built for entry in self.entries.values())

    def key_inputs(self, split: str) -> dict[str, Any]:
        from bench.probes.embeddings import key_inputs

        inputs = key_inputs(self.cfg, self.spec, split, self._identity)
        args = {k: v for k, v in inputs["model_args"].items() if not k.startswith(_DECODER_SIDE)}
        del inputs["pooled"]
        necks = inputs["model_args"].get("necks") or []
        return {
            **inputs,
            "model_args": args,
            "necks": list(necks)[: self.fixed],
            "layout": "frozen",
            "features_code": FROZEN_VERSION,
        }

    def entry(self, split: str) -> Any:
        from bench.probes import cache_dir
        from bench.probes.cache import entry_key, get_or_build

        if split not in self.entries:
            inputs = self.key_inputs(split)
            build = lambda: _compute(self.model, self.fixed, self.source, split)  # noqa: E731
            self.entries[split] = get_or_build(cache_dir(self.cfg), entry_key(inputs), inputs, build, FROZEN_VERSION)
        return self.entries[split]


def _compute(model: Any, fixed: int, datamodule: Any, split: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(features, labels, layout) of one split in the dataset's order: every level flattened and concatenated,
    float32; the layout (each level's shape, the image sizes, the label key) goes into the entry's meta."""
    import torch
    from terratorch.models.utils import get_image_size, pad_images
    from torch.utils.data import DataLoader

    datamodule.setup("test" if split == "test" else "fit")
    loader = DataLoader(
        getattr(datamodule, f"{split}_dataset"),
        batch_size=int(getattr(datamodule, "batch_size", 8) or 8),
        shuffle=False,
        num_workers=int(getattr(datamodule, "num_workers", 0) or 0),
        collate_fn=getattr(datamodule, "collate_fn", None),
    )
    aug = getattr(datamodule, f"{'val' if split == 'train' else split}_aug", None) or getattr(datamodule, "aug", None)
    was_training, device = model.training, "cuda" if torch.cuda.is_available() else "cpu"
    model.eval().to(device)
    chunks, labels, layout = [], [], {}
    # No draw from the global RNG (a DataLoader's iterator takes its seed there): the trial's shuffling and
    # initialisation stay what they are end to end.
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch = aug(batch) if aug is not None else batch
            x, label_key = batch["image"], "mask" if "mask" in batch else "label"
            rest = {k: v for k, v in batch.items() if k not in ("image", "mask", "label", "filename")}
            image_size = get_image_size(x)
            if model.patch_size and model.padding is not None:
                x = pad_images(x, model.patch_size, model.padding)
            levels = _run_necks(list(model.neck)[:fixed], model.encoder(x, **rest), get_image_size(x))
            layout = {
                "levels": [list(f.shape[1:]) for f in levels],
                "image_size": list(image_size),
                "input_size": list(get_image_size(x)),
                "label_key": label_key,
            }
            chunks.append(torch.cat([f.float().flatten(1) for f in levels], 1).cpu().numpy())
            labels.append(batch[label_key].cpu().numpy())
    model.train(was_training).to("cpu")
    log.info("encoded the %s split for the frozen decoder: %d samples, levels %s", split, sum(map(len, chunks)), layout)
    return np.concatenate(chunks), np.concatenate(labels), layout


def _run_necks(necks: list[Any], features: Any, input_size: Any) -> list[Any]:
    for neck in necks:  # as TerraTorch's NeckSequential calls them
        try:
            features = neck(features, image_size=input_size)
        except TypeError:
            features = neck(features)
    return list(features)


def _on_features(model: Any, fixed: int, features: _Features) -> Any:
    """The model's own modules, under their own names, run from the cached features on: the forward of
    TerraTorch's PixelWiseModel / ScalarOutputModel after `self.neck` (pixel_wise_model.py, scalar_output_model.py)."""
    import torch.nn.functional as F  # noqa: N812
    from terratorch.models.model import ModelOutput
    from terratorch.models.utils import center_crop
    from torch import nn

    pixelwise = type(model).__name__ == "PixelWiseModel"

    class OnFeatures(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, child in model.named_children():  # the encoder too: checkpoints keep the end-to-end keys
                self.add_module(name, child)

        def forward(self, x: Any, **kwargs: Any) -> Any:  # `model`'s modules are this module's children
            meta = features.entry("train").meta
            input_size, image_size = tuple(meta["input_size"]), tuple(meta["image_size"])
            levels = _run_necks(list(model.neck)[fixed:], list(x), input_size)

            def finish(out: Any) -> Any:
                if not pixelwise:
                    return out
                if model.rescale and out.shape[-2:] != input_size:
                    out = F.interpolate(out, size=input_size, mode="bilinear")
                out = model._check_for_single_channel_and_squeeze(out)  # TerraTorch's (a staticmethod)
                return center_crop(out, model.image_size_out or image_size)

            mask = finish(model.head(model.decoder([f.clone() for f in levels])))
            aux = {name: finish(head([f.clone() for f in levels])) for name, head in model.aux_heads.items()}
            return ModelOutput(output=mask, auxiliary_heads=aux)

    return OnFeatures()


def _datamodule(features: _Features, batch_size: int) -> Any:
    """A LightningDataModule over the cached features, batched as the task's own (the training split shuffled
    from the same seed, its last short batch dropped when the task's datamodule drops it)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Split(Dataset):
        def __init__(self, entry: Any) -> None:
            self.x, self.y = entry.arrays(mmap=True)
            self.shapes, self.key = entry.meta["levels"], entry.meta["label_key"]
            self.ends = np.cumsum([int(np.prod(s)) for s in self.shapes]).tolist()

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, Any]:
            row = np.array(self.x[i])
            starts = [0, *self.ends[:-1]]
            levels = [torch.from_numpy(row[a:b]).reshape(s) for a, b, s in zip(starts, self.ends, self.shapes)]
            return {"image": levels, self.key: torch.from_numpy(np.array(self.y[i]))}

    class Features(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            # What SplitGuard compares (getattr(dm, "_proxy", dm)): the task's own datasets.
            self._proxy = getattr(features.source, "_proxy", features.source)

        def setup(self, stage: str) -> None:
            features.source.setup(stage)

        def loader(self, split: str) -> DataLoader:
            source = features.source
            drop = split == "train" and bool(getattr(source, "drop_last", False))
            return DataLoader(
                Split(features.entry(split)), batch_size=batch_size, shuffle=split == "train", drop_last=drop
            )

        def train_dataloader(self) -> DataLoader:
            return self.loader("train")

        def val_dataloader(self) -> DataLoader:
            return self.loader("val")

        def test_dataloader(self) -> DataLoader:
            return self.loader("test")

    return Features()
