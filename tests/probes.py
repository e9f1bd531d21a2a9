"""A Lightning callback tests hand to train() through the config's `callbacks` node (Hydra
instantiates it by dotted path): what a running job leaves on disk at each epoch's end."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl


class RecordResumePoint(pl.Callback):
    """Appends, at each training epoch's start, whether the job's checkpoints/last.ckpt exists: what a
    job requeued then would resume from (Lightning runs checkpoint callbacks after all others, so
    the epoch's end is too early to see its own)."""

    def __init__(self, path: str, output_dir: str) -> None:
        self.path, self.last = Path(path), Path(output_dir) / "checkpoints" / "last.ckpt"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "last_ckpt": self.last.is_file()}) + "\n")
