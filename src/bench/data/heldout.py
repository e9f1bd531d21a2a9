"""The job's side of "validation is never the test split" (bench.splits has the config's side).

  build_datamodule(spec, batch_size)  the task's TerraTorch datamodule; with
                                      task.validation_from_train, one whose validation samples are
                                      a fixed share of its training samples and whose test samples
                                      are the dataset's own validation split (what TerraTorch tests on)
  check_distinct(datamodule, task)    the datamodule's resolved validation and test samples, compared
                                      before training; the same samples stop the cell

Imported inside the job only (torch).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from hydra.utils import get_class, instantiate

from bench.errors import ConfigError, SplitOverlapError
from bench.splits import HeldOut

if TYPE_CHECKING:
    from lightning.pytorch import LightningDataModule
    from torch.utils.data import Dataset

    from bench.spec import TrialSpec

log = logging.getLogger(__name__)


def build_datamodule(spec: TrialSpec, batch_size: int) -> LightningDataModule:
    arguments = {key: value for key, value in spec.datamodule.items() if key != "_target_"}
    arguments["batch_size"] = batch_size
    if spec.heldout is None:
        return instantiate({"_target_": spec.datamodule["_target_"], **arguments}, _convert_="all")
    # Nested nodes (transforms, a geobench_v2 class) are instantiated as Hydra would, then given to
    # the datamodule's subclass that holds the validation samples out of the training split.
    carved = _held_out_class(get_class(spec.datamodule["_target_"]))
    return carved(**instantiate(arguments, _convert_="all"), heldout=spec.heldout)


@functools.cache
def _held_out_class(base: type[Any]) -> type[Any]:
    if not all(hasattr(base, attr) for attr in ("setup", "train_dataloader")):
        raise ConfigError(f"task.validation_from_train needs a LightningDataModule; {base.__name__} is not one")

    class HeldOutValidation(base):
        __doc__ = (
            f"{base.__name__} whose validation samples are held out of its training split and "
            "whose test samples are its own validation split."
        )
        # The base class's, which its __init__ and setup set (annotations only: nothing is assigned here).
        train_dataset: Dataset[Any]
        val_dataset: Dataset[Any]
        train_transform: object
        val_transform: object

        def __init__(self, *args: Any, heldout: HeldOut, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.heldout = heldout

        def setup(self, stage: str) -> None:
            if stage not in ("fit", "validate"):
                super().setup(stage)  # test: the dataset's validation split, as TerraTorch reads it
                return
            _require(self, ("train_transform", "val_transform"))
            super().setup("fit")
            training = self.train_dataset
            # The held-out samples are validation samples: read with the validation transform
            # (no random flips), from a second reading of the training split.
            augment, self.train_transform = self.train_transform, self.val_transform
            try:
                super().setup("fit")
                as_validation = self.train_dataset
            finally:
                self.train_transform = augment
            ids = sample_ids(training)
            if ids is None:
                raise ConfigError(
                    f"task.validation_from_train: {base.__name__}'s training dataset does not list its "
                    "sample files (image_files), so bench cannot choose a fixed held-out set"
                )
            kept, held = split_indices(ids, self.heldout)
            from torch.utils.data import Subset

            self.train_dataset, self.val_dataset = Subset(training, kept), Subset(as_validation, held)
            log.info(
                "validation: %d of the %d training samples held out (fraction %g, seed %d); the dataset's "
                "validation split is the test split",
                len(held),
                len(ids),
                self.heldout.fraction,
                self.heldout.seed,
            )

    HeldOutValidation.__name__ = HeldOutValidation.__qualname__ = f"HeldOut{base.__name__}"
    return HeldOutValidation


def _require(datamodule: object, attributes: tuple[str, ...]) -> None:
    missing = [a for a in attributes if not hasattr(datamodule, a)]
    if missing:
        raise ConfigError(
            f"task.validation_from_train: {type(datamodule).__name__} has no {', '.join(missing)}, "
            "which holding validation samples out of its training split needs"
        )


def split_indices(ids: list[str], heldout: HeldOut) -> tuple[list[int], list[int]]:
    """(kept for training, held out for validation): the share `fraction` of the samples whose
    hash of (seed, file name) is lowest, at least one, never all. By file name, not position or
    path, so the choice survives a reordering of the listing and a move of the dataset."""
    if len(ids) < 2:
        raise ConfigError(
            f"task.validation_from_train: the training split has {len(ids)} sample(s); holding a "
            "validation set out of it needs at least 2"
        )
    rank = sorted(
        range(len(ids)), key=lambda i: hashlib.sha256(f"{heldout.seed}:{os.path.basename(ids[i])}".encode()).hexdigest()
    )
    n_held = min(len(ids) - 1, max(1, round(heldout.fraction * len(ids))))
    held = sorted(rank[:n_held])
    kept = sorted(rank[n_held:])
    return kept, held


def sample_ids(dataset: object) -> list[str] | None:
    """Each sample's identity as the dataset itself lists it: its file (TerraTorch's datasets:
    image_files), its tortilla id (geobench_v2: data_df), its ids or samples; None when it lists
    none of these. A Subset's are its own samples'."""
    indices = getattr(dataset, "indices", None)
    inner = getattr(dataset, "dataset", None)
    if indices is not None and inner is not None:
        ids = sample_ids(inner)
        return None if ids is None else [ids[i] for i in indices]
    for attribute in ("image_files", "ids"):
        listed = getattr(dataset, attribute, None)
        if isinstance(listed, (list, tuple)):
            return [os.path.realpath(str(f)) if attribute == "image_files" else str(f) for f in listed]
    frame = getattr(dataset, "data_df", None)
    if frame is not None and "tortilla:id" in getattr(frame, "columns", ()):
        return [str(v) for v in frame["tortilla:id"]]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (list, tuple)):
        return [os.path.realpath(str(s[0])) for s in samples]
    return None


def check_distinct(datamodule: LightningDataModule, task_name: str) -> None:
    """The validation and test samples the datamodule really resolves: refuse the same ones, and
    log any overlap. Needs the fit stage set up (the trainer does that first)."""
    datamodule.setup("test")
    val, test = getattr(datamodule, "val_dataset", None), getattr(datamodule, "test_dataset", None)
    val_ids, test_ids = (sample_ids(d) if d is not None else None for d in (val, test))
    if val_ids is None or test_ids is None:
        log.warning(
            "task '%s': its datamodule does not list its validation and test samples, so bench compares "
            "them only after the first repeat (their metrics)",
            task_name,
        )
        return
    shared = set(val_ids) & set(test_ids)
    if shared and len(shared) == len(set(val_ids)) == len(set(test_ids)):
        example = sorted(shared)[0]
        raise SplitOverlapError(
            f"task '{task_name}': its datamodule ({type(datamodule).__name__}) resolves the same {len(shared)} "
            f"samples for validation and test (e.g. {example}), so its test scores would be the validation scores "
            "that chose the model. Give it a held-out test split, or hold out a validation set from the training "
            "split (task.validation_from_train)."
        )
    if shared:
        log.warning(
            "task '%s': %d of its %d test samples are also validation samples (e.g. %s)",
            task_name,
            len(shared),
            len(set(test_ids)),
            sorted(shared)[0],
        )
