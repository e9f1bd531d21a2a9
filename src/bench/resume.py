"""An interrupted job continues instead of starting over (a SLURM requeue, a Ray retry: the same
job, same overrides, same output dir), and a finished one keeps no resume point.

  resume_checkpoint(output_dir)      this job's own last.ckpt, if it ran before
  drop_resume_point(cfg, output_dir) last.ckpt removed once the job is done (keep_last_checkpoint keeps it)
  cluster_plugins()                  Lightning's SLURM environment without its own requeue handler

No torch at import (Lightning is imported inside cluster_plugins).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def resume_checkpoint(output_dir: Path) -> str | None:
    """This job's own last.ckpt, if it ran before: a SLURM requeue or a Ray retry reruns the same
    job (same overrides, same output dir), and it should continue, not start over."""
    last = resume_point(output_dir)
    if last.is_file():
        log.warning("resuming from %s: this job ran before (requeued or retried)", last)
        return str(last)
    return None


def drop_resume_point(cfg: DictConfig, output_dir: Path) -> None:
    """last.ckpt (weights and optimizer state) exists only so an interrupted job can continue.
    Once the job has finished it is dead weight: for Prithvi-EO 300M about 3.6 GB per trial."""
    if not cfg.get("keep_last_checkpoint", False):
        resume_point(output_dir).unlink(missing_ok=True)


def resume_point(output_dir: Path) -> Path:
    return output_dir / "checkpoints" / "last.ckpt"


def cluster_plugins() -> list:
    if "SLURM_JOB_ID" not in os.environ:
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    # submitit owns requeueing (it checkpoints the job and resubmits it on timeout/preemption);
    # Lightning's own SLURM requeue handler would race it for the same signal.
    return [SLURMEnvironment(auto_requeue=False)]
