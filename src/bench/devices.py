"""Which GPUs a trial may use, from what its launcher assigned. No torch import.

Ray sets CUDA_VISIBLE_DEVICES for each task to the GPUs it reserved (ray.get_gpu_ids()); SLURM
does the same for jobs with a GPU gres. bench checks the trial sees exactly what it asked for,
pins CUDA_VISIBLE_DEVICES to that, and tells Lightning how many devices to use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.errors import ConfigError


@dataclass(frozen=True)
class DeviceAssignment:
    accelerator: str  # "auto" | "cpu" | "gpu"
    devices: int
    visible: list[str] | None  # CUDA_VISIBLE_DEVICES to set; None: leave the environment alone


def assign_devices(requested: int | str | None, env: Mapping[str, str],
                   launcher_gpu_ids: Sequence[int | str] | None = None) -> DeviceAssignment:
    """The devices a trial that asked for `requested` GPUs ("auto", 0, 1, ...) should use.

    launcher_gpu_ids: what the launcher says it reserved (Ray's get_gpu_ids()), when it says.
    Otherwise CUDA_VISIBLE_DEVICES is read; unset means the launcher did not restrict anything.
    """
    if requested in (None, "auto"):
        return DeviceAssignment("auto", 1, None)
    try:
        wanted = int(requested)
    except (TypeError, ValueError):
        raise ConfigError(f"launcher.gpus_per_trial={requested!r}: use auto or a whole number of GPUs") from None
    if wanted < 0:
        raise ConfigError(f"launcher.gpus_per_trial={wanted} must be >= 0")
    if wanted == 0:
        return DeviceAssignment("cpu", 1, [])  # hide every GPU from a CPU trial
    if launcher_gpu_ids is not None:
        ids = [str(i) for i in launcher_gpu_ids]
    elif env.get("CUDA_VISIBLE_DEVICES") is not None:
        ids = [i.strip() for i in env["CUDA_VISIBLE_DEVICES"].split(",") if i.strip()]
    else:
        return DeviceAssignment("gpu", wanted, None)  # nothing to check against: trust the launcher
    if len(ids) < wanted:
        raise ConfigError(
            f"the trial asked for {wanted} GPU(s) (launcher.gpus_per_trial) but its launcher gave it "
            f"{len(ids)}: {','.join(ids) or 'none'}. Check the cluster's GPU resources (Ray num_gpus, SLURM gres)."
        )
    # More visible than asked (a workstation without isolation): keep the trial to its share.
    return DeviceAssignment("gpu", wanted, ids[:wanted])


def launcher_gpu_ids() -> list[int] | None:
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
