"""What a trial cost: the resources its launcher granted x the time it held them.

    in the driver (basic launcher)  hydra.sweeper.accounting.local_gpus/local_cpus (null: what the
                                     driver's machine has) x the job's run time
    Ray                             the task's num_gpus (plus any resource named in
                                     accounting.gpu_resources) and num_cpus x its run time in the worker
    submitit, local executor        gpus_per_node and cpus_per_task x tasks_per_node x its time
    SLURM                           sacct: every run of the job, requeues included: its elapsed time
                                     x the GPUs in its AllocTRES, and its CPUTimeRAW

Each finished trial carries the figures as user attributes (gpu_hours, cpu_hours, and the grant:
gpus, cpus), which results.csv, repeats.csv, the budget and the trackers read.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ATTR_GPU_HOURS, ATTR_CPU_HOURS = "gpu_hours", "cpu_hours"
ATTR_GPUS, ATTR_CPUS = "gpus", "cpus"  # the grant
ATTR_COST_SOURCE = "cost_source"  # "sacct", or "granted x elapsed"
SACCT_WAIT_S = 30.0  # the accounting database can lag a job's end by a few seconds
_FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REQUEUED",
}


@dataclass(frozen=True)
class Cost:
    gpu_hours: float
    cpu_hours: float
    source: str = "granted x elapsed"


@dataclass(frozen=True)
class Grant:
    gpus: float = 0.0
    cpus: float = 0.0

    def for_seconds(self, seconds: float) -> Cost:
        return Cost(self.gpus * seconds / 3600, self.cpus * seconds / 3600)


def record(trial: Any, grant: Grant | None, cost: Cost) -> None:
    """Keep the figures on a live optuna Trial (before it is told)."""
    trial.set_user_attr(ATTR_GPU_HOURS, cost.gpu_hours)
    trial.set_user_attr(ATTR_CPU_HOURS, cost.cpu_hours)
    trial.set_user_attr(ATTR_COST_SOURCE, cost.source)
    if grant is not None:
        trial.set_user_attr(ATTR_GPUS, grant.gpus)
        trial.set_user_attr(ATTR_CPUS, grant.cpus)


def recorded(trial: Any) -> Cost | None:
    """A finished (frozen) trial's cost, or None for one that never ran or predates accounting."""
    attrs = trial.user_attrs
    if ATTR_GPU_HOURS not in attrs:
        return None
    return Cost(float(attrs[ATTR_GPU_HOURS]), float(attrs.get(ATTR_CPU_HOURS, 0.0)), attrs.get(ATTR_COST_SOURCE, ""))


def total(trials: Iterable[Any]) -> Cost:
    costs = [c for c in map(recorded, trials) if c is not None]
    return Cost(sum(c.gpu_hours for c in costs), sum(c.cpu_hours for c in costs))


def visible_gpu_count() -> int:
    """GPUs this process may use, without importing torch: CUDA_VISIBLE_DEVICES when set, else
    what nvidia-smi lists, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def local_grant(gpus: float | None, cpus: float | None) -> Grant:
    """What a trial run inside the driver holds: as configured, else the driver's whole machine."""
    return Grant(
        float(visible_gpu_count() if gpus is None else gpus),
        float(len(os.sched_getaffinity(0)) if cpus is None else cpus),
    )


def ray_grant(options: dict[str, Any], gpu_resources: Iterable[str]) -> Grant:
    """A Ray task's request: num_gpus plus the custom resources that stand for GPUs; Ray's
    default for a task is 1 CPU."""
    custom = options.get("resources") or {}
    names = set(gpu_resources)
    gpus = float(options.get("num_gpus") or 0) * ("GPU" in names) + sum(
        float(v) for k, v in custom.items() if k in names
    )
    cpus = options.get("num_cpus")
    return Grant(gpus, 1.0 if cpus is None else float(cpus))


def submitit_grant(params: dict[str, Any]) -> Grant:
    tasks = int(params.get("tasks_per_node") or 1) * int(params.get("nodes") or 1)
    gpus = params.get("gpus_per_node") or 0
    return Grant(float(gpus) * int(params.get("nodes") or 1), float(params.get("cpus_per_task") or 1) * tasks)


def sacct_cost(job_id: str, wait_s: float = SACCT_WAIT_S) -> Cost | None:
    """A SLURM job's cost from the accounting database, every run of it (-D: requeues) summed;
    None when sacct cannot say (no accounting, or the job never reached it)."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = _sacct_rows(job_id)
        if rows and all(state.split()[0] in _FINAL_STATES for state, *_ in rows):
            break
        if time.monotonic() >= deadline:
            if not rows:
                return None
            log.warning("sacct still shows SLURM job %s as %s: its cost is counted as of now", job_id, rows[-1][0])
            break
        time.sleep(1.0)
    gpu_seconds = sum(elapsed * _gpus_in(tres) for _, elapsed, tres, _ in rows)
    cpu_seconds = sum(cpu_time for *_, cpu_time in rows)
    return Cost(gpu_seconds / 3600, cpu_seconds / 3600, "sacct")


def _sacct_rows(job_id: str) -> list[tuple[str, float, str, float]]:
    """(state, elapsed s, AllocTRES, CPU time s) per run of the job: -X the allocation, not its steps."""
    try:
        result = subprocess.run(
            ["sacct", "-j", str(job_id), "-D", "-X", "-n", "-P", "-o", "State,ElapsedRaw,AllocTRES,CPUTimeRAW"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in result.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 4 and fields[1].isdigit():
            rows.append((fields[0], float(fields[1]), fields[2], float(fields[3] or 0)))
    return rows


def _gpus_in(tres: str) -> float:
    """gres/gpu=2 (or gres/gpu:a100=2) in an AllocTRES string; typed entries repeat the total."""
    counts = {}
    for item in tres.split(","):
        name, _, count = item.partition("=")
        if name.startswith("gres/gpu") and count.isdigit():
            counts[name] = int(count)
    return float(counts.get("gres/gpu", max(counts.values(), default=0)))
