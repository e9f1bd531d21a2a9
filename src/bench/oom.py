"""Out-of-memory trials recovered: a trial whose batches do not fit its GPU is retried at half the
batch size and twice the gradient accumulation, from scratch.

Running out of GPU memory says nothing about how good a trial's hyperparameters are, only about
the GPU it landed on (and, when trials share a GPU, its neighbours). Failing it would spend the
cell's budget on a hardware accident; retrying with batch_size / 2 x accumulate_grad_batches x 2
keeps the tiles per optimizer step (the effective batch size) and so the optimisation the
sampler chose, at the cost of speed. Only an OOM at batch size 1, or after oom_retries retries,
fails the trial.

No torch import at module level: train() imports this before torch, like the rest of bench.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.errors import ConfigError

log = logging.getLogger(__name__)
Fitted = TypeVar("Fitted")


@dataclass(frozen=True)
class BatchPlan:
    """How one attempt feeds the model: batch size, batches per optimizer step, retries so far."""

    batch_size: int
    accumulate_grad_batches: int
    oom_retries: int = 0

    def halved(self) -> BatchPlan:
        # Rounded up, so an odd batch size keeps at least its tiles per step (5 -> 3 x 2), and
        # every batch size above 1 still shrinks.
        return BatchPlan(-(-self.batch_size // 2), self.accumulate_grad_batches * 2, self.oom_retries + 1)

    def as_outputs(self) -> dict[str, int]:
        """What the trial records (its outputs, MLflow tags) once it had to retry."""
        return {
            "oom_retries": self.oom_retries,
            "batch_size": self.batch_size,
            "accumulate_grad_batches": self.accumulate_grad_batches,
        }


class TrialOutOfMemoryError(RuntimeError):
    """The trial ran out of GPU memory with no retry left. Not a cell-wide (CellError) problem:
    another trial of the cell may be smaller, or meet a GPU without neighbours."""

    def __init__(self, message: str, plan: BatchPlan) -> None:
        super().__init__(message)
        self.plan = plan  # the attempt that ran out of memory last


def allowed_retries(value: Any) -> int:
    """oom_retries from the config, refused before any import when it is not a count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"oom_retries={value!r} is not possible: it is how many times a trial that ran out of GPU "
            "memory is retried at half the batch size, a whole number of at least 0"
        )
    return value


def fit_with_oom_retries(
    fit: Callable[[BatchPlan], Fitted],
    first: BatchPlan,
    max_retries: int,
    discard_attempt: Callable[[], None],
    label: str,
) -> tuple[Fitted, BatchPlan]:
    """fit(plan) until it fits in memory; returns what it returned and the plan that ran.

    fit must build everything it trains from scratch (datamodule, model, Trainer) and reseed, so a
    retry starts from the same initial weights. discard_attempt removes what a failed attempt left
    (its checkpoints: a last.ckpt must not be resumed with another batch size). label names the
    trial in the warning and the error."""
    import torch

    plan = first
    while True:
        try:
            return fit(plan), plan
        except torch.cuda.OutOfMemoryError as exc:
            refusal = _no_retry_left(plan, max_retries, exc, label)
            if refusal is not None:
                raise refusal from exc
            retry = plan.halved()
            log.warning(
                "%s: out of GPU memory at batch size %d, accumulate_grad_batches %d; retrying from scratch "
                "at batch size %d, accumulate_grad_batches %d: as many tiles per optimizer step (retry %d of "
                "oom_retries=%d)",
                label,
                plan.batch_size,
                plan.accumulate_grad_batches,
                retry.batch_size,
                retry.accumulate_grad_batches,
                retry.oom_retries,
                max_retries,
            )
        # Outside the except block: the exception, its traceback and the frames that held the failed
        # attempt's Trainer, model and batch are gone, so their memory can actually be returned.
        free_memory()
        discard_attempt()
        plan = retry


def free_memory() -> None:
    import torch

    gc.collect()  # the Trainer, its strategy and callbacks reference each other: only gc frees them
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # hand cached blocks back, for this retry and for trials sharing the GPU


def _no_retry_left(plan: BatchPlan, max_retries: int, exc: BaseException, label: str) -> TrialOutOfMemoryError | None:
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if plan.batch_size == 1:
        return TrialOutOfMemoryError(
            f"{label}: ran out of GPU memory at batch size 1{_after(plan)}, so no smaller batch can help ({cause}). "
            "Use a smaller model or smaller tiles, or give the trial more GPU memory (a larger GPU; with a "
            "fractional launcher.gpus_per_trial, a whole one).",
            plan,
        )
    if plan.oom_retries >= max_retries:
        return TrialOutOfMemoryError(
            f"{label}: ran out of GPU memory at batch size {plan.batch_size} (accumulate_grad_batches "
            f"{plan.accumulate_grad_batches}){_after(plan)}, and oom_retries={max_retries} allows no further "
            f"retry at half the batch size ({cause}). Raise oom_retries or lower hparams.batch_size.",
            plan,
        )
    return None


def _after(plan: BatchPlan) -> str:
    if not plan.oom_retries:
        return ""
    return f", after {plan.oom_retries} retr{'y' if plan.oom_retries == 1 else 'ies'} that halved it"
