"""Lightning callbacks that tests/test_oom.py hands to train() through the config's `callbacks`
node, so they are importable by dotted path (Hydra instantiates them)."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import torch


class InjectOOM(pl.Callback):
    """Raises CUDA's out-of-memory error for every training batch larger than `threshold` tiles,
    from epoch `from_epoch` on (so earlier epochs can finish and write their checkpoints first):
    what a GPU too small for the batch size does, on a machine without a GPU."""

    def __init__(self, threshold: int, from_epoch: int = 0) -> None:
        self.threshold, self.from_epoch = threshold, from_epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.from_epoch and batch["image"].shape[0] > self.threshold:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")


class RecordEpochs(pl.Callback):
    """Appends one JSON line per finished training epoch to `path`: the epoch, the batch sizes
    the model really received, how many batches, the Trainer's accumulation and its optimizer
    steps so far. Only epochs that finished are written: an attempt that ran out of memory
    mid-epoch leaves the lines of the epochs before."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.batch_sizes: set[int] = set()
        self.batches = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batch_sizes, self.batches = set(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batch_sizes.add(int(batch["image"].shape[0]))
        self.batches += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        line = {
            "epoch": trainer.current_epoch,
            "batch_sizes": sorted(self.batch_sizes),
            "batches": self.batches,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "global_step": trainer.global_step,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
