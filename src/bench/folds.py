"""k-fold tuning (hydra.sweeper.folds=K): a tuning trial trains K models on K splits of the
training set, each validated on its held-out fold, and returns their mean.

  fold_indices(ids, labels, k, seed)  the K held-out folds (indices into the training set): fixed by
                                      a hash of (seed, each sample's file), so the same for every
                                      model, trial and machine, whatever order the files are listed
                                      in; stratified by class when labels are given (single-label
                                      classification), plain otherwise (multi-label, segmentation,
                                      regression: iterative stratification is not worth it here)
  check_folds(task, k, n, labels)     the sentence refusing K folds the training set cannot give
  train_folds(cfg, spec, k, fit)      the K fits, one fresh model and Trainer each, their outputs

Only the training split is read: each fold's validation samples are training samples, the
datamodule's own validation split is not used and the test split never is (a tuning trial never
tests). Repeats are unchanged: they train on the whole training set and test on the best checkpoint.
The fold seed is the task's name, so every model of a task sees the same folds.

Imported inside the job only (torch).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import get_class, instantiate

from bench.errors import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch import LightningDataModule

    from bench.spec import TrialSpec

log = logging.getLogger(__name__)


def fold_indices(ids: list[str], labels: list[Any] | None, k: int, seed: str) -> list[list[int]]:
    """K disjoint held-out folds covering every index. Within each class (or over all samples when
    `labels` is None) the samples are ranked by the hash of (seed, id) and dealt to the folds in
    turn, continuing where the previous class stopped, so fold sizes differ by at most one and each
    class's count per fold by at most one."""
    groups: dict[Any, list[int]] = {}
    for i, label in enumerate(labels if labels is not None else [None] * len(ids)):
        groups.setdefault(label, []).append(i)
    names = _relative(ids)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for label in sorted(groups, key=repr):
        ranked = sorted(groups[label], key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest())
        for i in ranked:
            folds[turn % k].append(i)
            turn += 1
    return [sorted(f) for f in folds]


def _relative(ids: list[str]) -> list[str]:
    """Sample files relative to their common folder (the choice survives moving the dataset)."""
    if len(ids) > 1 and all(os.path.isabs(i) for i in ids):
        root = os.path.commonpath(ids)
        return [os.path.relpath(i, root) for i in ids]
    return [os.path.basename(i) for i in ids]


def check_folds(task_name: str, k: int, n: int, labels: list[Any] | None) -> None:
    if k < 2:
        raise ConfigError(f"task '{task_name}': k-fold tuning needs at least 2 folds, not {k}")
    if labels is not None:
        counts: dict[Any, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        smallest, count = min(counts.items(), key=lambda item: item[1])
        if k > count:
            raise ConfigError(
                f"task '{task_name}': {k} folds need at least {k} training samples of every class, and class "
                f"{smallest!r} has {count} (of {n}): use at most {count} folds (hydra.sweeper.folds)"
            )
    elif k > n:
        raise ConfigError(
            f"task '{task_name}': {k} folds need at least {k} training samples, and it has {n}: use at most "
            f"{n} folds (hydra.sweeper.folds)"
        )


def training_samples(spec: TrialSpec, stratify: bool) -> tuple[list[str], list[Any] | None]:
    """(each training sample's id, its class when `stratify` and the dataset lists them), read from
    the task's datamodule set up for fitting (its training split only is used)."""
    from bench.data.heldout import sample_ids

    cls, arguments = _base_datamodule(spec, spec.datamodule["batch_size"])
    datamodule = cls(**arguments)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    ids = sample_ids(dataset)
    if ids is None:
        raise ConfigError(
            f"task '{spec.task_name}': k-fold tuning needs a training dataset that lists its sample files "
            f"(image_files, samples); {type(dataset).__name__} lists none"
        )
    labels = _labels(dataset) if stratify else None
    if stratify and labels is None:
        log.warning("task '%s': its training dataset lists no class labels: folds are not stratified", spec.task_name)
    return ids, labels


def _labels(dataset: Any) -> list[Any] | None:
    samples = getattr(dataset, "samples", None)  # ImageFolder-like: (file, class index)
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (list, tuple)) and len(samples[0]) > 1:
        return [int(s[1]) for s in samples]
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, (list, tuple)) and targets and isinstance(targets[0], int):
        return list(targets)
    return None


def _base_datamodule(spec: TrialSpec, batch_size: int) -> Any:
    arguments = {key: value for key, value in spec.datamodule.items() if key != "_target_"}
    arguments["batch_size"] = batch_size
    return _fold_class(get_class(spec.datamodule["_target_"])), instantiate(arguments, _convert_="all")


def fold_datamodule(spec: TrialSpec, batch_size: int, train: list[int], held: list[int]) -> LightningDataModule:
    """The task's datamodule whose training samples are `train` (indices into its training split)
    and whose validation samples are `held`, read with the validation transform."""
    cls, arguments = _base_datamodule(spec, batch_size)
    return cls(**arguments, fold=(train, held))


@functools.cache
def _fold_class(base: type[Any]) -> type[Any]:
    class Fold(base):
        __doc__ = f"{base.__name__} whose training and validation samples are a fold's, both from its training split."
        # The base class's, which its __init__ and setup set (annotations only: nothing is assigned here).
        train_dataset: Any
        val_dataset: Any
        train_transform: Any
        val_transform: Any

        def __init__(self, *args: Any, fold: tuple[list[int], list[int]] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fold = fold

        def setup(self, stage: str) -> None:
            super().setup("fit" if stage in ("fit", "validate") else stage)
            if self.fold is None or stage not in ("fit", "validate"):
                return
            from torch.utils.data import Subset

            training, as_validation = self.train_dataset, self.train_dataset
            if hasattr(self, "train_transform") and hasattr(self, "val_transform"):
                augment, self.train_transform = self.train_transform, self.val_transform
                try:  # a second reading of the training split, without the training augmentation
                    super().setup("fit")
                    as_validation = self.train_dataset
                finally:
                    self.train_transform = augment
            train, held = self.fold
            self.train_dataset, self.val_dataset = Subset(training, train), Subset(as_validation, held)

    Fold.__name__ = Fold.__qualname__ = f"Fold{base.__name__}"
    return Fold


def train_folds(
    spec: TrialSpec,
    k: int,
    stratify: bool,
    fit: Callable[[int, list[int], list[int], list[float]], float],
    record: Path | None = None,
) -> list[float]:
    """Each fold's best validation value, fold by fold: fit(fold, train indices, held-out indices,
    the values of the folds done) builds and fits a fresh model and returns its value (and reports
    the running mean for pruning: hydra_plugins.bench_sweeper.api.FoldReporter). `record`: the
    folder each fold's samples are written to, as record/fold_<i>/samples.json ({"train": [...],
    "validation": [...]}, the sample files), so which samples a fold used can be checked."""
    ids, labels = training_samples(spec, stratify)
    check_folds(spec.task_name, k, len(ids), labels)
    folds = fold_indices(ids, labels, k, spec.task_name)
    values: list[float] = []
    for number, held in enumerate(folds):
        kept = set(held)
        train = [i for i in range(len(ids)) if i not in kept]
        log.info(
            "%s: fold %d of %d, %d training and %d validation samples",
            spec.task_name,
            number + 1,
            k,
            len(train),
            len(held),
        )
        if record is not None:
            where = record / f"fold_{number}"
            where.mkdir(parents=True, exist_ok=True)
            chosen = {"train": [ids[i] for i in train], "validation": [ids[i] for i in held]}
            (where / "samples.json").write_text(json.dumps(chosen, indent=1))
        values.append(fit(number, train, held, values))
    return values
