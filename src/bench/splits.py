"""Validation is never the test split: the rules checked from the config alone, before launch.

The validation split picks the best trial, stops training early and chooses the checkpoint; the
test split must be samples none of that has seen, or the test scores are validation scores. Two
ways a task can break that are visible without reading any data (so the driver refuses the cell
before anything is launched, and a dry run says so, without torch):
  - a TerraTorch datamodule that builds its test set from the dataset's validation split (some
    datasets ship no test split: HLS burn scars, multi-temporal crop classification). Such a task
    must hold out its own validation set (`task.validation_from_train`), and then tests on the
    dataset's validation files, which nothing else reads;
  - a datamodule whose every val_* argument equals its test_* counterpart (the same root, list
    file or partition), e.g. a generic datamodule pointed twice at one folder.
The same datamodule's resolved file lists are compared again in the job (bench.data.heldout), and
a repeat's validation and test metrics after it (bench.evaluation), for what config cannot show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from bench.errors import ConfigError, SplitOverlapError

# TerraTorch 1.2.11 datamodules whose setup("test") reads split="val" (tests/test_split_guard.py
# reads their source to keep this list true). By class name: a target may name the class through
# terratorch.datamodules or through its own module.
TESTS_ON_VALIDATION = frozenset(
    {
        "FireScarsNonGeoDataModule",
        "MultiTemporalCropClassificationDataModule",
        "BurnIntensityNonGeoDataModule",
    }
)


@dataclass(frozen=True)
class HeldOut:
    """task.validation_from_train: the share of the training samples held out for validation,
    chosen by a hash of each sample's file name and the seed (the same samples on every machine,
    in every trial and repeat, whatever order the files are listed in)."""

    fraction: float
    seed: int


def held_out(task: DictConfig) -> HeldOut | None:
    node = task.get("validation_from_train")
    if node is None:
        return None
    fraction, seed = node.get("fraction"), node.get("seed", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(
            f"task '{task.name}': task.validation_from_train.fraction={fraction!r} is not possible: it "
            "is the share of the training samples held out for validation, a number between 0 and 1"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"task '{task.name}': task.validation_from_train.seed={seed!r} must be a whole number")
    return HeldOut(float(fraction), seed)


def check_split_sources(task_name: str, datamodule: dict[str, Any], heldout: HeldOut | None) -> None:
    """Refuse a datamodule config whose test samples are, visibly, its validation samples."""
    target = str(datamodule.get("_target_", ""))
    name = target.rpartition(".")[2]
    if heldout is None and target.startswith("terratorch.") and name in TESTS_ON_VALIDATION:
        raise SplitOverlapError(
            f"task '{task_name}': TerraTorch's {name} tests on the dataset's validation split, which also picks the "
            "best trial, stops training early and chooses the checkpoint, so its test scores would be validation "
            "scores. Hold out a validation set from the training split (task.validation_from_train: {fraction: 0.2, "
            "seed: 0}); the dataset's validation files are then the test split."
        )
    pairs = {
        key[4:]: (value, datamodule.get(f"test_{key[4:]}"))
        for key, value in datamodule.items()
        if key.startswith("val_") and f"test_{key[4:]}" in datamodule and not key.endswith("_transform")
    }
    if pairs and all(_same(a, b) for a, b in pairs.values()):
        shown = ", ".join(f"val_{k} = test_{k} = {a!r}" for k, (a, _) in sorted(pairs.items()))
        raise SplitOverlapError(
            f"task '{task_name}': its validation and test splits are the same files ({shown}), so its test scores "
            "would be the validation scores that chose the model. Point test_* at the dataset's held-out test "
            "files, or hold out a validation set from the training split (task.validation_from_train)."
        )


def _same(a: object, b: object) -> bool:
    """Equal values; paths compared as the filesystem resolves them (a trailing slash, `..` or a
    symlink does not make a folder another one)."""
    if isinstance(a, str) and isinstance(b, str) and (os.sep in a or os.sep in b):
        return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
    return a == b
