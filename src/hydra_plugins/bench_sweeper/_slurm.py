"""Trials as submitit jobs (hydra-submitit-launcher): SLURM on a cluster, or local processes.

Every trial is one executor.submit() of the launcher itself, as its launch() does through
map_array, polled asynchronously. On SLURM, bench also guards against the ways a cluster can
swallow a benchmark without an error:
  - a request no node of the partition can hold: sbatch accepts it on clusters without
    EnforcePartLimits, and the job pends forever (reason PartitionConfig). Checked against
    `sinfo` while the sweep is planned (_plan.py), and pending reasons that cannot resolve are
    watched;
  - a busy controller or a QOS submit limit: sbatch fails for a while; retried with backoff;
  - a driver that dies: its jobs go on, and the next driver of the sweep follows them (reattach).
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import time
from pathlib import Path
from typing import Any, cast

from hydra.core.singleton import Singleton
from omegaconf import OmegaConf

from ._cost import Grant, sacct_cost, submitit_grant
from ._dispatch import Dispatcher, Finished, Prepared, job_config, launch_line
from ._errors import LaunchError
from ._private_apis import submitit_executor_name

log = logging.getLogger(__name__)

# sbatch's own words for failures that pass (it gives no other signal: every failure exits 1).
TRANSIENT_SBATCH = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "temporarily unable to accept job",
    "Resource temporarily unavailable",
    "job submit limit",
    "MaxSubmitJob",
    "Requested operation is presently disabled",
)
SUBMIT_RETRY_S = 600.0

# Pending reasons that no amount of waiting resolves: the job asks for more than its partition,
# QOS or association allows, or names something that does not exist.
NEVER_STARTS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "DependencyNeverSatisfied",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxMemoryPerJob",
    "QOSMaxNodePerJobLimit",
    "QOSMaxWallDurationPerJobLimit",
    "AssocMaxCpuPerJobLimit",
    "AssocMaxGRESPerJob",
    "AssocMaxMemPerJob",
    "AssocMaxNodesPerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
}


def is_transient(message: str) -> bool:
    """sbatch words a QOS's submit limit (it passes as jobs end) and a QOS's per-job size or time
    limit (it never passes) alike, "Job violates accounting/QOS policy (job submit limit, user's size
    and/or time limits)"; only the reason it names as well tells them apart."""
    if any(reason in message for reason in NEVER_STARTS):
        return False
    return any(words in message for words in TRANSIENT_SBATCH)


PENDING_CHECK_S = 10.0
_REQUEST_KEYS = (
    "partition",
    "qos",
    "account",
    "constraint",
    "nodes",
    "tasks_per_node",
    "cpus_per_task",
    "gpus_per_node",
    "gpus_per_task",
    "gres",
    "mem_gb",
    "mem_per_cpu",
    "mem_per_gpu",
    "timeout_min",
)


def describe_request(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={params[k]}" for k in _REQUEST_KEYS if params.get(k) is not None)


class SubmititDispatcher(Dispatcher):
    def __init__(self, launcher: Any, poll_interval: float) -> None:
        import submitit

        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        self.launcher, self.poll_interval = launcher, poll_interval
        self.executor_name = submitit_executor_name(launcher)
        params = dict(launcher.params)
        # The job pickles carry the real config, secrets included: only their owner may read them.
        self.folder = str(params["submitit_folder"])
        private = Path(*itertools.takewhile(lambda part: "%" not in part, Path(self.folder).parts))  # before %j
        private.mkdir(parents=True, exist_ok=True)
        private.chmod(0o700)
        # The same executor set-up as BaseSubmititLauncher.launch().
        init = {"folder": self.folder}
        if "max_num_timeout" in params:
            init[f"{self.executor_name}_max_num_timeout"] = params["max_num_timeout"]
        self.executor = submitit.AutoExecutor(cluster=self.executor_name, **init)
        self.base_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        self.params: dict[str, Any] = {}
        self._use(params)
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.pending: dict[Any, Any] = {}
        self.collected: list[Finished] = []  # ended during an sbatch retry's backoff
        self._last_pending_check = time.monotonic()

    def _use(self, params: dict[str, Any]) -> None:
        """Set the executor's request to these launcher params (hydra.launcher of a job's config)."""
        if params == self.params:
            return
        self.params, self.request = params, describe_request(params)
        self.executor.update_parameters(
            **{
                (k if k in self.base_keys else f"{self.executor_name}_{k}"): v
                for k, v in params.items()
                if k not in {"submitit_folder", "max_num_timeout"}
            }
        )

    def prepare(self, overrides: list[str], job_num: int) -> Prepared:
        # The job's own request (a model may need more than the launcher's default: model.resources),
        # read from its composed config: tens of ms, against about a second for sbatch itself.
        launcher_conf = job_config(self.launcher, overrides, job_num).hydra.launcher
        params = cast(dict[str, Any], OmegaConf.to_container(launcher_conf, resolve=True))
        return Prepared(overrides, job_num, request={k: v for k, v in params.items() if k != "_target_"})

    def grant(self, prepared: Prepared) -> Grant:
        return submitit_grant(prepared.request)

    def submit(self, prepared: Prepared, ticket: int) -> dict[str, Any]:
        overrides, job_num = prepared.overrides, prepared.job_num
        self._use(prepared.request)
        log.debug(launch_line(job_num, overrides))
        args = (
            self.launcher,
            list(overrides),
            "hydra.sweep.dir",
            job_num,
            f"job_id_for_{job_num}",
            Singleton.get_state(),
        )
        started, delay = time.monotonic(), 2.0
        while True:
            try:
                job = self.executor.submit(*args)
                break
            except Exception as exc:  # submitit raises FailedJobError with sbatch's stderr
                message = str(exc).strip()
                if not is_transient(message):
                    raise LaunchError(
                        f"{self.executor_name} refused the trial's job ({self.request}): {message}"
                    ) from exc
                if time.monotonic() - started > SUBMIT_RETRY_S:
                    raise LaunchError(
                        f"sbatch kept failing for {SUBMIT_RETRY_S:.0f} s ({self.request}): {message}"
                    ) from exc
                log.warning("sbatch failed, retrying in %.0f s: %s", delay, message.splitlines()[-1])
                self._collect_while_waiting(delay)
                delay = min(delay * 2, 60.0)
        self.pending[job] = ticket
        return {"executor": self.executor_name, "job_id": str(job.job_id), "folder": self.folder}

    def _collect_while_waiting(self, seconds: float) -> None:
        """The backoff between sbatch attempts: jobs that end meanwhile are collected when they end
        (their results and sacct figures kept for the next wait()), not after the retries."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.collected += self._collect_done()
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def wait(self, timeout: float) -> list[Finished]:
        if self.collected:
            done, self.collected = self.collected, []
            return done
        deadline = time.monotonic() + timeout
        while self.pending:
            if done := self._collect_done():
                return done
            if stuck := self._never_starting():
                return stuck
            if time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        return []

    def _collect_done(self) -> list[Finished]:
        return [self._collect(job) for job in [j for j in self.pending if j.done()]]

    def _collect(self, job: Any) -> Finished:
        ticket = self.pending.pop(job)
        # SLURM's own accounting, every run of the job (requeues) included; submitit's local
        # executor has none, and the driver's measure is used.
        cost = sacct_cost(str(job.job_id)) if self.executor_name == "slurm" else None
        try:
            # A job of several tasks (the ranks of a multi-process trial, srun-started) runs the job
            # in every task; its first task's return is the trial's, whatever the others returned.
            first = job.task(0).result() if job.num_tasks > 1 else job.results()[0]
            return Finished(ticket, first, cost=cost)
        except Exception as exc:  # cancelled, timed out past requeues, node failure
            return Finished(ticket, None, exc, cost=cost)

    def _never_starting(self) -> list[Finished]:
        """Jobs pending for a reason that cannot resolve: cancelled and reported as a LaunchError."""
        if self.executor_name != "slurm" or time.monotonic() - self._last_pending_check < PENDING_CHECK_S:
            return []
        self._last_pending_check = time.monotonic()
        by_id = {str(job.job_id): job for job in self.pending}
        out = subprocess.run(
            ["squeue", "-h", "-t", "PENDING", "-o", "%i|%r", "-j", ",".join(by_id)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        stuck = []
        for line in out.splitlines():
            job_id, _, reason = line.strip().partition("|")
            if job_id in by_id and reason in NEVER_STARTS:
                job = by_id[job_id]
                job.cancel(check=False)
                error = LaunchError(
                    f"SLURM job {job_id} can never start (pending reason {reason}): the cluster accepted the request "
                    f"({self.request}) but its partition, QOS or account limits do not allow it. Lower the request "
                    "or pick another partition/qos/account."
                )
                stuck.append(Finished(self.pending.pop(job), None, error))
        return stuck

    def cancel(self) -> None:
        for job in list(self.pending):
            job.cancel(check=False)
        self.pending.clear()

    def reattach(self, job_ref: dict[str, Any] | None, ticket: int) -> bool:
        import submitit

        if not job_ref or job_ref.get("executor") != "slurm" or self.executor_name != "slurm":
            return False  # submitit's local jobs cannot be found again by a new driver
        job: submitit.SlurmJob[Any] = submitit.SlurmJob(folder=job_ref["folder"], job_id=job_ref["job_id"])
        if not job.paths.result_pickle.exists() and job.watcher.get_state(job.job_id, mode="force") == "UNKNOWN":
            return False  # unknown to sacct: gone
        self.pending[job] = ticket
        return True


def check_partition_fits(params: dict[str, Any]) -> None:
    """Stop before the first submission when no node of the partition can ever run one trial."""
    partition = params.get("partition")
    result = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G|%l"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise LaunchError(
            f"sinfo failed ({result.stderr.strip()}): cannot check the SLURM request; is SLURM reachable here?"
        )
    nodes = [_node(line) for line in result.stdout.splitlines() if line.count("|") == 5]
    known = sorted({n["partition"] for n in nodes})
    mine = [n for n in nodes if (n["partition"] == partition if partition else n["default"])]
    if not mine:
        raise LaunchError(
            f"SLURM partition {partition!r} does not exist here; partitions: {', '.join(known) or 'none'}. "
            "Set launcher.partition (hydra.launcher.partition) to one of them."
        )
    need = {
        "cpus": int(params.get("cpus_per_task") or 1) * int(params.get("tasks_per_node") or 1),
        "memory_mb": float(params.get("mem_gb") or 0) * 1024,
        "gpus": int(params.get("gpus_per_node") or 0),
        "minutes": float(params.get("timeout_min") or 0),
    }
    if any(all(node[k] >= v for k, v in need.items()) for node in mine):
        return
    biggest = max(mine, key=lambda n: (n["gpus"], n["cpus"], n["memory_mb"]))
    raise LaunchError(
        f"every trial asks SLURM for {_describe(need)} ({describe_request(params)}), but no node of partition "
        f"{mine[0]['partition']!r} can hold it: the largest has {_describe(biggest)}. sbatch would accept the job "
        "and it would pend forever. Lower launcher.cpus_per_trial / memory_gb / gpus_per_trial / timeout_min, or pick "
        "another launcher.partition (hydra.sweeper.check_resources=false skips this check)."
    )


def _node(line: str) -> dict[str, Any]:
    partition, _, cpus, memory, gres, limit = line.strip().split("|")
    gpus = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            gpus += int(fields[-1])
    return {
        "partition": partition.rstrip("*"),
        "default": partition.endswith("*"),
        "cpus": int(cpus),
        "memory_mb": float(memory.rstrip("+")),
        "gpus": gpus,
        "minutes": _minutes(limit),
    }


def _minutes(limit: str) -> float:
    """sinfo time limits: infinite, 30:00, 4:00:00, 1-00:00:00."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return float("inf")
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds / 60


def _describe(res: dict[str, Any]) -> str:
    minutes = "no time limit" if res["minutes"] == float("inf") else f"{res['minutes']:g} min"
    return f"{res['cpus']} CPU, {res['memory_mb'] / 1024:.1f} GB memory, {res['gpus']} GPU, {minutes}"
