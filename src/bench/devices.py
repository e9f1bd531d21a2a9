"""Which GPUs a trial may use, from what its launcher assigned. No torch import.

Ray sets CUDA_VISIBLE_DEVICES for each task to the GPUs it reserved (ray.get_gpu_ids()); SLURM
does the same for jobs with a GPU gres. bench checks the trial sees exactly what it asked for,
pins CUDA_VISIBLE_DEVICES to that, and tells Lightning how many devices to use. A trial that asked
for a fraction of a GPU (Ray packing several trials onto one) trains on that one device, shared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from omegaconf import DictConfig

from bench.errors import ConfigError


@dataclass(frozen=True)
class DeviceAssignment:
    accelerator: str  # "auto" | "cpu" | "gpu"
    devices: int
    visible: list[str] | None  # CUDA_VISIBLE_DEVICES to set; None: leave the environment alone


def gpus_requested(requested: float | str | None) -> float | None:
    """launcher.gpus_per_trial as a number: None for auto; 0 (CPU only); a fraction of one GPU
    below 1 (Ray packs 1/x trials onto each GPU: 0.5 puts two on one); or a whole number of GPUs.
    Anything else is refused: 1.5 GPUs cannot be given to one trial (Ray would reserve a second
    GPU only in part, and Lightning trains on whole devices)."""
    if requested in (None, "auto"):
        return None
    try:
        wanted = math.nan if isinstance(requested, bool) else float(requested)  # true is no GPU count
    except (TypeError, ValueError):
        wanted = math.nan
    if not math.isfinite(wanted) or wanted < 0:
        raise ConfigError(
            f"launcher.gpus_per_trial={requested!r}: use auto, 0 (CPU only), a fraction of one GPU "
            "below 1 (0.5: two trials share a GPU) or a whole number of GPUs."
        )
    if wanted > 1 and not wanted.is_integer():
        raise ConfigError(
            f"launcher.gpus_per_trial={requested!r}: a trial can share one GPU (a fraction below 1, "
            "e.g. 0.5) or use whole GPUs (1, 2, ...), not a whole GPU and part of another."
        )
    return wanted


def is_fraction_of_a_gpu(wanted: float | None) -> TypeGuard[float]:
    return wanted is not None and 0 < wanted < 1


def processes_per_trial(launcher: Mapping) -> int:
    """How many processes train one trial (DDP on one node, bench.ddp): one per GPU for a whole
    number of GPUs above 1 (launcher.gpus_per_trial=N); launcher.processes_per_trial=N for a CPU
    trial (gpus_per_trial=0: N CPU processes over gloo, how the tests run DDP without GPUs);
    otherwise 1. The two cannot disagree."""
    wanted = gpus_requested(launcher.get("gpus_per_trial", "auto"))
    asked = launcher.get("processes_per_trial")
    gpus = int(wanted) if wanted is not None and wanted >= 1 else None
    if asked is None:
        return gpus or 1
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise ConfigError(f"launcher.processes_per_trial={asked!r}: use a whole number of processes, 1 or more.")
    if asked > 1 and (gpus is None and wanted != 0 or gpus is not None and gpus != asked):
        raise ConfigError(
            f"launcher.processes_per_trial={asked} with launcher.gpus_per_trial={launcher.get('gpus_per_trial')}: "
            "a trial on GPUs runs one process per GPU (set gpus_per_trial=N alone); processes_per_trial is for "
            "CPU trials (gpus_per_trial=0)."
        )
    return asked


def check_gpus_per_trial(cfg: DictConfig) -> None:
    """The request is one the trial can use and its launcher can make: checked for every cell in
    the driver before anything is launched (bench.preflight.check_cell), and again in each job.
    SLURM's gres counts whole GPUs, so a fraction there would silently become a whole GPU (or
    none); it is refused instead. The local launcher's trials run on this machine: N GPUs per
    trial need N visible GPUs here (Ray and SLURM check their nodes as they launch)."""
    launcher = cfg.get("launcher") or {}
    wanted = gpus_requested(launcher.get("gpus_per_trial", "auto"))
    processes_per_trial(launcher)
    if launcher.get("name") == "local" and wanted is not None and wanted > 1:
        from hydra_plugins.bench_sweeper.api import visible_gpu_count

        if (visible := visible_gpu_count()) < wanted:
            raise ConfigError(
                f"launcher.gpus_per_trial={wanted:g}: a trial of the local launcher runs on this machine, "
                f"which has {visible} GPU(s) visible. Lower gpus_per_trial, or use launcher=ray or "
                "launcher=slurm with nodes that have that many."
            )
    if launcher.get("name") == "slurm" and is_fraction_of_a_gpu(wanted):
        raise ConfigError(
            f"launcher=slurm with launcher.gpus_per_trial={wanted:g}: SLURM allocates whole GPUs, so "
            "trials cannot share one there. Use launcher.gpus_per_trial=1, or launcher=ray, which packs "
            f"{math.floor(1 / wanted)} such trials onto each GPU."
        )


def assign_devices(
    requested: float | str | None,
    env: Mapping[str, str],
    launcher_gpu_ids: Sequence[int | str] | None = None,
    processes: int = 1,
) -> DeviceAssignment:
    """The devices a trial that asked for `requested` GPUs ("auto", 0, 0.5, 1, 2, ...) should use.

    A fraction of a GPU trains on one device, shared with other trials: Ray gives such a task the
    id of the GPU it packed it onto, like a whole-GPU task.

    launcher_gpu_ids: what the launcher says it reserved (Ray's get_gpu_ids()), when it says.
    processes: a CPU trial's process count (processes_per_trial); a GPU trial runs one per GPU.
    Otherwise CUDA_VISIBLE_DEVICES is read; unset means the launcher did not restrict anything.
    """
    wanted = gpus_requested(requested)
    if wanted is None:
        return DeviceAssignment("auto", 1, None)
    if wanted == 0:
        return DeviceAssignment("cpu", processes, [])  # hide every GPU from a CPU trial
    devices = 1 if is_fraction_of_a_gpu(wanted) else int(wanted)
    if launcher_gpu_ids is not None:
        ids = [str(i) for i in launcher_gpu_ids]
    elif env.get("CUDA_VISIBLE_DEVICES") is not None:
        ids = [i.strip() for i in env["CUDA_VISIBLE_DEVICES"].split(",") if i.strip()]
    else:
        return DeviceAssignment("gpu", devices, None)  # nothing to check against: trust the launcher
    if len(ids) < devices:
        raise ConfigError(
            f"the trial asked for {wanted:g} GPU(s) (launcher.gpus_per_trial) but its launcher gave it "
            f"{len(ids)}: {','.join(ids) or 'none'}. Check the cluster's GPU resources (Ray num_gpus, SLURM gres)."
        )
    # More visible than asked (a workstation without isolation): keep the trial to its share.
    return DeviceAssignment("gpu", devices, ids[:devices])


def assign_trial_devices(cfg: DictConfig) -> DeviceAssignment:
    """The job's devices (assign_devices), CUDA_VISIBLE_DEVICES pinned to them before anything
    initialises CUDA (a multi-process trial's child ranks inherit it)."""
    import os

    launcher = cfg.get("launcher") or {}
    requested = launcher.get("gpus_per_trial", "auto")
    assignment = assign_devices(requested, os.environ, launcher_gpu_ids(), processes_per_trial(launcher))
    if assignment.visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(assignment.visible)
    return assignment


def launcher_gpu_ids() -> list[int | str] | None:
    """GPUs Ray reserved for this task, when running inside a Ray worker; else None."""
    import sys

    if "ray" not in sys.modules:
        return None
    import ray

    if not ray.is_initialized():
        return None
    try:
        return [int(i) if str(i).isdigit() else i for i in ray.get_gpu_ids()]
    except Exception:  # the driver process, or an older Ray API
        return None
