"""Hand trials to a Hydra launcher one at a time and collect them as they finish.

Hydra's Launcher.launch() takes a batch and blocks until all of it is done, which is what makes
stock sweepers wait for their slowest trial. For the launchers that can run jobs elsewhere, bench
drives the same machinery asynchronously:
  - hydra-ray-launcher: its own launch_job_on_ray(), keeping the ObjectRefs and ray.wait()-ing;
  - hydra-submitit-launcher: executor.submit() of the launcher itself (as its launch() does via
    map_array), polling the submitit Jobs.
Any other launcher (Hydra's basic one included) runs in-process, so it gets one trial at a time
through its own launch(): there is only one slot to keep busy and no batch to wait on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

from .errors import LaunchError

log = logging.getLogger(__name__)


@dataclass
class Finished:
    ticket: Any  # what the sweeper handed to submit()
    job_return: JobReturn | None  # None when the launcher itself failed (worker died, cancelled)
    launcher_error: BaseException | None = None


class Dispatcher:
    """prepare() does the slow part of a launch (composing the job's config) ahead of time;
    submit() returns at once (for async launchers); wait() returns whatever has finished."""

    max_slots: int | None = None  # None: as many as the sweeper's n_jobs
    # True when prepare() does real work in the driver, so preparing the next trial while every
    # slot is busy takes it off the critical path. Otherwise asking early would only cost the
    # sampler the result it is about to get.
    prepare_ahead = False

    def prepare(self, overrides: list[str], job_num: int) -> Any:
        return overrides, job_num

    def submit(self, prepared: Any, ticket: Any) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[Finished]:
        raise NotImplementedError

    def close(self) -> None:
        """Called once at the end of the sweep, also when it raises."""


class SerialDispatcher(Dispatcher):
    """Any Hydra launcher, one single-job launch() per trial."""

    max_slots = 1

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.done: deque[Finished] = deque()

    def submit(self, prepared: Any, ticket: Any) -> None:
        overrides, job_num = prepared
        (job_return,) = self.launcher.launch([overrides], initial_job_idx=job_num)
        self.done.append(Finished(ticket, job_return))

    def wait(self, timeout: float) -> list[Finished]:
        out = list(self.done)
        self.done.clear()
        return out


def _job_config(launcher: Any, overrides: list[str], job_num: int) -> Any:
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"job_id_for_{job_num}"
        sweep_config.hydra.job.num = job_num
    return sweep_config


class RayDispatcher(Dispatcher):
    prepare_ahead = True

    def __init__(self, launcher: Any, check_resources: bool = True) -> None:
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job, start_ray

        setup_globals()
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.ray, self.launcher = ray, launcher
        # Unlike hydra-ray-launcher's launch(), do not force object_store_memory: Ray refuses it
        # when connecting to an existing cluster. The launcher preset sets it for local starts.
        start_ray(launcher.ray_cfg.init)
        # The same remote function hydra-ray-launcher runs, but declared once (its launch()
        # re-declares and re-exports it for every job), and the parts of its arguments that are
        # the same for every trial are put in the object store once instead of pickled per trial.
        options = {k: v for k, v in (OmegaConf.to_container(launcher.ray_cfg.remote, resolve=True) or {}).items()
                   if v is not None}
        if check_resources:
            _check_ray_can_place(ray, options, launcher.ray_cfg.init.get("address"))
        self.run_job = ray.remote(**options)(_run_job) if options else ray.remote(_run_job)
        self.shared: dict[str, Any] | None = None
        self.pending: dict[Any, Any] = {}

    def prepare(self, overrides: list[str], job_num: int) -> Any:
        log.info("\t#%d : %s", job_num, " ".join(filter_overrides(overrides)))
        return _job_config(self.launcher, overrides, job_num)

    def submit(self, prepared: Any, ticket: Any) -> None:
        launcher = self.launcher
        if self.shared is None:
            self.shared = {
                "hydra_context": self.ray.put(launcher.hydra_context),
                "task_function": self.ray.put(launcher.task_function),
                "singleton_state": self.ray.put(Singleton.get_state()),
            }
        ref = self.run_job.remote(sweep_config=prepared, **self.shared)
        self.pending[ref] = ticket

    def wait(self, timeout: float) -> list[Finished]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is already done too
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        out = []
        for ref in ready:
            ticket = self.pending.pop(ref)
            try:
                out.append(Finished(ticket, self.ray.get(ref)))
            except Exception as exc:  # the task itself never returned: worker died, node lost
                out.append(Finished(ticket, None, exc))
        return out


def _check_ray_can_place(ray: Any, options: dict[str, Any], address: Any) -> None:
    """Ray leaves a task no node can hold pending forever; say so before the first trial."""
    need = {"GPU": float(options.get("num_gpus") or 0), "CPU": float(options.get("num_cpus", 1) or 0),
            "memory": float(options.get("memory") or 0)}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
        return

    def describe(res: dict[str, float]) -> str:
        return f"{res.get('GPU', 0):g} GPU, {res.get('CPU', 0):g} CPU, {res.get('memory', 0) / 1024**3:.1f} GB memory"

    biggest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0), r.get("memory", 0)), default={})
    raise LaunchError(
        f"every trial asks Ray for {describe(need)}, but no node of the Ray cluster "
        f"({address or 'started locally'}, {len(nodes)} node(s)) has that much; the largest has {describe(biggest)}. "
        "Lower launcher.gpus_per_trial / cpus_per_trial / memory_gb or add nodes "
        "(hydra.sweeper.check_resources=false skips this check, e.g. for an autoscaling cluster)."
    )


class SubmititDispatcher(Dispatcher):
    def __init__(self, launcher: Any, poll_interval: float) -> None:
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        self.launcher, self.poll_interval = launcher, poll_interval
        # The same executor set-up as BaseSubmititLauncher.launch().
        executor_name = launcher._EXECUTOR
        params = dict(launcher.params)
        init_keys = {"submitit_folder", "max_num_timeout"}
        init = {"folder": params["submitit_folder"]}
        if "max_num_timeout" in params:
            init[f"{executor_name}_max_num_timeout"] = params["max_num_timeout"]
        self.executor = submitit.AutoExecutor(cluster=executor_name, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        self.executor.update_parameters(
            **{(k if k in base else f"{executor_name}_{k}"): v for k, v in params.items() if k not in init_keys}
        )
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.pending: dict[Any, Any] = {}

    def submit(self, prepared: Any, ticket: Any) -> None:
        overrides, job_num = prepared
        log.info("\t#%d : %s", job_num, " ".join(filter_overrides(overrides)))
        try:
            job = self.executor.submit(
                self.launcher, list(overrides), "hydra.sweep.dir", job_num, f"job_id_for_{job_num}", Singleton.get_state()
            )
        except Exception as exc:  # sbatch said no: the request itself is wrong for this cluster
            request = ", ".join(f"{k}={v}" for k, v in sorted(self.launcher.params.items())
                                if v is not None and k in _REQUEST_KEYS)
            raise LaunchError(f"{self.launcher._EXECUTOR} refused the trial's job ({request}): {exc}") from exc
        self.pending[job] = ticket

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while self.pending:
            done = [job for job in self.pending if job.done()]
            if done:
                return [self._collect(job) for job in done]
            if time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        return []

    def _collect(self, job: Any) -> Finished:
        ticket = self.pending.pop(job)
        try:
            return Finished(ticket, job.results()[0])
        except Exception as exc:  # cancelled, timed out past requeues, node failure
            return Finished(ticket, None, exc)


_REQUEST_KEYS = {"gpus_per_node", "gpus_per_task", "gres", "cpus_per_task", "mem_gb", "mem_per_cpu", "mem_per_gpu",
                 "partition", "qos", "account", "constraint", "timeout_min", "nodes", "tasks_per_node"}


def make_dispatcher(launcher: Launcher, poll_interval: float, check_resources: bool = True) -> Dispatcher:
    # Matched by name so that neither ray nor submitit is imported for the basic launcher.
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(launcher).__mro__}
    if "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher" in names:
        return RayDispatcher(launcher, check_resources)
    if "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher" in names:
        return SubmititDispatcher(launcher, poll_interval)
    return SerialDispatcher(launcher)
