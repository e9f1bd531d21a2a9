"""bench: benchmark geospatial foundation models with Hydra, Optuna and MLflow.

Importing bench must stay cheap (no torch): the CLI, config composition and dry runs use it.
"""

import math
import secrets
from collections.abc import Callable
from typing import Any

from hydra.types import RunMode
from omegaconf import Container, ListConfig, OmegaConf

__version__ = "0.1.0"

# A resolver takes whatever the interpolation passes it (strings, numbers, config nodes).
_RESOLVERS: dict[str, Callable[..., Any]] = {
    # `${len:${task.model_bands}}` lets a model size its input layer from the task's bands.
    "len": lambda seq: len(seq),
    # `${canonical_bands:${task.bands},${task.band_names}}`: a task's bands in the datamodule's own
    # names -> the canonical names (TerraTorch's HLSBands/SARBands) that models match on. A name the
    # mapping lacks stays as it is; bench.spec names any band the task does not offer.
    # A ListConfig, not a list: OmegaConf.resolve() can only put config nodes in place.
    "canonical_bands": lambda bands, names: ListConfig([str((names or {}).get(b, b)) for b in bands]),
    # `${round_up:${task.image_size},32}`: the smallest multiple of 32 at least the tile size, for
    # backbones whose position embedding is fixed at build time (DOFA, Clay) while TerraTorch pads
    # tiles to a multiple of twice the patch size.
    "round_up": lambda value, multiple: -(-int(value) // int(multiple)) * int(multiple),
    # `${finetuning:<freeze_backbone>}`: what a cell does to its backbone, in the leaderboard's words.
    "finetuning": lambda frozen: "frozen" if frozen else "full_ft",
    # Launcher presets: Ray wants memory in bytes (and takes fractions of a GPU as they are).
    "gb_to_bytes": lambda gb: None if gb is None else int(float(gb) * 1024**3),
    # hydra/job_logging=bench: a sweep's jobs log to their file only; a single run to the console too.
    "job_console_handler": lambda mode: "silent" if mode == RunMode.MULTIRUN else "console",
}


def _trial_resource(key: str, default: Any, *, _root_: Container) -> Any:
    """`${trial_resource:gpus_per_trial,1}` in a launcher preset: what the cell's model says one
    trial needs (model.resources.<key>), else the launcher's default. A value set on the command
    line (launcher.gpus_per_trial=2) replaces the interpolation and so wins over both."""
    value = OmegaConf.select(_root_, f"model.resources.{key}", default=None)
    return default if value is None else value


def _slurm_gpus(value: Any) -> Any:
    """`${slurm_gpus:${launcher.gpus_per_trial}}`: SLURM's GPU request. None for 0: SLURM must not see
    a gres request for 0 GPUs on clusters that have no gres at all. SLURM counts whole GPUs, so a
    fraction is rounded up to the one GPU it would share; bench refuses a fraction with SLURM for
    every cell before submitting anything (bench.devices.check_gpus_per_trial), but the launcher is
    built before that check, and its gpus_per_node only takes whole numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value  # not a number: the launcher's own validation names it
    return None if number == 0 else math.ceil(number)


def _slurm_tasks(gpus: Any, processes: Any) -> int:
    """`${slurm_tasks:${launcher.gpus_per_trial},${launcher.processes_per_trial}}`: the tasks of a
    trial's SLURM job, one per process (bench.ddp.srun_ranks: srun starts the ranks). A value that
    bench.devices refuses counts as one task here: the refusal comes before anything is submitted."""
    from bench.devices import processes_per_trial
    from bench.errors import ConfigError

    try:
        return processes_per_trial({"gpus_per_trial": gpus, "processes_per_trial": processes})
    except ConfigError:
        return 1


def _per_task(total: Any, tasks: Any) -> Any:
    """`${per_task:${launcher.cpus_per_trial},<tasks>}`: a trial's CPUs split between its job's
    tasks (SLURM's cpus_per_task), at least one each."""
    if total is None:
        return None
    return max(1, int(total) // max(1, int(tasks)))


def _local_trial_gpus(requested: Any, devices: Any) -> float:
    """`${local_trial_gpus:${launcher.gpus_per_trial},${trainer.devices}}`: the GPUs an in-process
    trial holds, for its GPU-hours: auto means Lightning's `devices` of what is visible (no torch
    import: CUDA_VISIBLE_DEVICES or nvidia-smi)."""
    if requested not in (None, "auto"):
        return float(requested)
    from hydra_plugins.bench_sweeper.api import visible_gpu_count

    visible = visible_gpu_count()
    return float(min(visible, int(devices))) if str(devices).isdigit() else float(visible)


def _decoder_name(task_type: object, decoder: Any) -> Any:
    """`${decoder_name:${task.type},<the model's decoder>}`: what a cell puts on its encoder, as the
    report and the leaderboard name it: the detection framework bench.spec gives a detection task
    type (faster-rcnn, mask-rcnn), else the model's decoder for the type."""
    from bench.spec import TASK_TYPES  # no torch: spec is config only

    kind = TASK_TYPES.get(str(task_type))
    return dict(kind.model_args).get("framework", decoder) if kind is not None else decoder


_RESOLVERS["decoder_name"] = _decoder_name
_RESOLVERS["trial_resource"] = _trial_resource
_RESOLVERS["local_trial_gpus"] = _local_trial_gpus
_RESOLVERS["slurm_gpus"] = _slurm_gpus
_RESOLVERS["slurm_tasks"] = _slurm_tasks
_RESOLVERS["per_task"] = _per_task
for _name, _resolver in _RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
# `${unique:}`: a random token, the same everywhere in one config (cached, like Hydra's ${now:}, and
# copied into every job's config), so run and sweep dirs started in the same second never collide.
if not OmegaConf.has_resolver("unique"):
    OmegaConf.register_new_resolver("unique", lambda: secrets.token_hex(3), use_cache=True)
