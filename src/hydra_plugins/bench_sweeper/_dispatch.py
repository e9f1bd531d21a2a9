"""Hand trials to a Hydra launcher one at a time and collect them as they finish.

Hydra's Launcher.launch() takes a batch and blocks until all of it is done, which is what makes
stock sweepers wait for their slowest trial. bench drives the launchers' own machinery instead:
  - Hydra's basic launcher: its run_job() in this process, one trial at a time;
  - hydra-ray-launcher: its remote _run_job(), keeping the ObjectRefs and ray.wait()-ing;
  - hydra-submitit-launcher: executor.submit() of the launcher itself (_slurm.py).
Any other launcher gets one trial at a time through its own launch().
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

from ._cost import Cost, Grant, ray_grant
from ._errors import LaunchError
from ._masking import mask_override
from ._private_apis import basic_launcher_class, ray_job_runner

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hydra.types import HydraContext, TaskFunction
    from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SetUpLauncher(Protocol):
    """A Hydra launcher after its setup(): what every launcher plugin keeps (Hydra's Launcher base
    class declares none of it)."""

    config: DictConfig
    hydra_context: HydraContext
    task_function: TaskFunction

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]: ...


@dataclass
class Prepared:
    """A trial made ready to launch: what every Dispatcher.prepare() returns, and what grant() and
    submit() are given back."""

    overrides: list[str]
    job_num: int
    # The job's composed config, where the driver composes it ahead of time (Ray); None where the
    # launcher composes it itself.
    config: DictConfig | None = None
    # The launcher params of the job's own config (hydra.launcher less _target_), where they set
    # what it asks the cluster for (submitit); empty otherwise.
    request: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finished:
    ticket: int  # what the loop handed to submit()
    job_return: JobReturn | None  # None when the launcher itself failed (worker died, cancelled)
    launcher_error: BaseException | None = None
    # How long the job itself ran (None: the driver's own measure, submission to result, is used),
    # or its whole cost when the launcher's accounting knows it (SLURM's sacct).
    elapsed_s: float | None = None
    cost: Cost | None = None


class Dispatcher:
    """prepare() does the slow part of a launch (composing the job's config) ahead of time;
    submit() returns at once for asynchronous launchers; wait() returns whatever has finished."""

    max_slots: int | None = None  # None: as many as the sweeper's n_jobs
    # True when prepare() does real work in the driver, so preparing the next trial while every
    # slot is busy takes it off the critical path. Otherwise asking early would only cost the
    # sampler the result it is about to get.
    prepare_ahead = False
    # Trials run inside the driver process (observers may rely on it, e.g. to write a file directly).
    runs_in_driver = False

    def prepare(self, overrides: list[str], job_num: int) -> Prepared:
        return Prepared(overrides, job_num)

    def grant(self, prepared: Prepared) -> Grant:
        """The resources a prepared trial will hold while it runs (_cost.py)."""
        return Grant()

    def submit(self, prepared: Prepared, ticket: int) -> dict[str, Any] | None:
        """Launch; return how to find the job again after a driver restart (stored on the trial),
        or None for jobs that cannot outlive their driver."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[Finished]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop every job still in flight (the driver was interrupted)."""

    def reattach(self, job_ref: dict[str, Any] | None, ticket: int) -> bool:
        """Follow a job an earlier driver launched, if it is still running or left a result:
        True means it will come back from wait() like any other. Jobs of launchers that cannot
        outlive their driver are dead by the time a new driver holds the sweep's lock."""
        return False

    def close(self) -> None:
        """Called once at the end of the sweep, also when it raises."""


def job_config(launcher: SetUpLauncher, overrides: list[str], job_num: int) -> DictConfig:
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"job_id_for_{job_num}"
        sweep_config.hydra.job.num = job_num
    return sweep_config


def launch_line(job_num: int, overrides: list[str]) -> str:
    return f"#{job_num} : " + " ".join(mask_override(o) for o in filter_overrides(overrides))


class InProcessDispatcher(Dispatcher):
    """Hydra's basic launcher: the same run_job() its launch() calls, one trial at a time here."""

    max_slots = 1
    runs_in_driver = True

    def __init__(self, launcher: SetUpLauncher, local: Grant | None = None) -> None:
        self.launcher, self.local = launcher, local or Grant()
        self.done: deque[Finished] = deque()
        setup_globals()
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def submit(self, prepared: Prepared, ticket: int) -> None:
        overrides, job_num = prepared.overrides, prepared.job_num
        launcher = self.launcher
        log.debug(launch_line(job_num, overrides))
        started = time.monotonic()
        try:
            job_return = run_job(
                hydra_context=launcher.hydra_context,
                task_function=launcher.task_function,
                config=job_config(launcher, overrides, job_num),
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        finally:
            # run_job switched logging to the job's config (in a sweep: the job's file only); the
            # driver gets its own back, also when the job was interrupted.
            configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
        self.done.append(Finished(ticket, job_return, elapsed_s=time.monotonic() - started))

    def grant(self, prepared: Prepared) -> Grant:
        return self.local

    def wait(self, timeout: float) -> list[Finished]:
        out = list(self.done)
        self.done.clear()
        return out


class SerialDispatcher(InProcessDispatcher):
    """Any other Hydra launcher: one single-job launch() per trial."""

    runs_in_driver = False

    def __init__(self, launcher: SetUpLauncher, local: Grant | None = None) -> None:
        self.launcher, self.local = launcher, local or Grant()  # assumed to run its jobs on this machine
        self.done = deque()

    def submit(self, prepared: Prepared, ticket: int) -> None:
        overrides, job_num = prepared.overrides, prepared.job_num
        started = time.monotonic()
        (job_return,) = self.launcher.launch([overrides], initial_job_idx=job_num)
        self.done.append(Finished(ticket, job_return, elapsed_s=time.monotonic() - started))


class RayDispatcher(Dispatcher):
    prepare_ahead = True

    def __init__(self, launcher: Any, check_resources: bool = True, gpu_resources: tuple[str, ...] = ("GPU",)) -> None:
        import ray

        _, start_ray = ray_job_runner()
        self.gpu_resources = gpu_resources
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
        options = _remote_options(launcher.ray_cfg.remote)
        self.check_resources, self.address = check_resources, launcher.ray_cfg.init.get("address")
        self.placeable: set[str] = set()  # requests checked against the cluster already
        self._check_placeable(options)
        self.options = options
        # Any: ray's stubs type a remote function's remote() by its positional signature only.
        self.run_job: Any = ray.remote(**options)(run_job_timed) if options else ray.remote(run_job_timed)
        self.shared: dict[str, Any] | None = None
        self.pending: dict[Any, Any] = {}

    def prepare(self, overrides: list[str], job_num: int) -> Prepared:
        log.debug(launch_line(job_num, overrides))
        return Prepared(overrides, job_num, config=job_config(self.launcher, overrides, job_num))

    def grant(self, prepared: Prepared) -> Grant:
        return ray_grant(_remote_options(_composed(prepared).hydra.launcher.ray.remote), self.gpu_resources)

    def submit(self, prepared: Prepared, ticket: int) -> None:
        launcher = self.launcher
        if self.shared is None:
            self.shared = {
                "hydra_context": self.ray.put(launcher.hydra_context),
                "task_function": self.ray.put(launcher.task_function),
                "singleton_state": self.ray.put(Singleton.get_state()),
            }
        # Each job asks for what its own config says (a model may need more than the launcher's
        # default: model.resources), not what the primary config said.
        config = _composed(prepared)
        options = _remote_options(config.hydra.launcher.ray.remote)
        run_job = self.run_job
        if options != self.options:
            self._check_placeable(options)
            run_job = run_job.options(**options)
        ref = run_job.remote(sweep_config=config, **self.shared)
        self.pending[ref] = ticket

    def _check_placeable(self, options: dict[str, Any]) -> None:
        key = repr(sorted(options.items()))  # values may be dicts (custom resources)
        if self.check_resources and key not in self.placeable:
            _check_ray_can_place(self.ray, options, self.address)
            self.placeable.add(key)

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
                job_return, elapsed_s = self.ray.get(ref)
                out.append(Finished(ticket, job_return, elapsed_s=elapsed_s))
            except Exception as exc:  # the task itself never returned: worker died, node lost
                out.append(Finished(ticket, None, exc))
        return out

    def cancel(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref, force=True)  # kills the worker process running the trial
        self.pending.clear()


def run_job_timed(**kwargs: Any) -> tuple[JobReturn, float]:
    """hydra-ray-launcher's remote job, timed where it runs: the time a trial held its resources,
    not the time it waited in Ray's queue."""
    run_job_remotely, _ = ray_job_runner()
    started = time.monotonic()
    job_return = run_job_remotely(**kwargs)
    return job_return, time.monotonic() - started


def _composed(prepared: Prepared) -> DictConfig:
    if prepared.config is None:
        raise TypeError("RayDispatcher was given a trial it did not prepare (no composed config)")
    return prepared.config


def _remote_options(remote: Any) -> dict[str, Any]:
    options = cast("dict[str, Any] | None", OmegaConf.to_container(remote, resolve=True))
    return {k: v for k, v in (options or {}).items() if v is not None}


def _check_ray_can_place(ray: Any, options: dict[str, Any], address: Any) -> None:
    """Ray leaves a task no node can hold pending forever; say so before the first trial that asks."""
    need = {
        "GPU": float(options.get("num_gpus") or 0),
        "CPU": float(options.get("num_cpus", 1) or 0),
        "memory": float(options.get("memory") or 0),
        **{k: float(v) for k, v in (options.get("resources") or {}).items()},
    }
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
        return

    custom = sorted(set(need) - {"GPU", "CPU", "memory"})

    def describe(res: dict[str, float]) -> str:
        return ", ".join(
            [
                f"{res.get('GPU', 0):g} GPU",
                f"{res.get('CPU', 0):g} CPU",
                f"{res.get('memory', 0) / 1024**3:.1f} GB memory",
                *(f"{res.get(k, 0):g} {k}" for k in custom),
            ]
        )

    biggest: dict[str, float] = max(
        nodes,
        key=lambda r: (*(r.get(k, 0) for k in custom), r.get("GPU", 0), r.get("CPU", 0), r.get("memory", 0)),
        default={},
    )
    raise LaunchError(
        f"a trial asks Ray for {describe(need)}, but no node of the Ray cluster "
        f"({address or 'started locally'}, {len(nodes)} node(s)) has that much; the largest has {describe(biggest)}. "
        "Lower launcher.gpus_per_trial / cpus_per_trial / memory_gb or add nodes "
        "(hydra.sweeper.check_resources=false skips this check, e.g. for an autoscaling cluster)."
    )


def make_dispatcher(
    launcher: Launcher, poll_interval: float, check_resources: bool = True, accounting: Any = None
) -> Dispatcher:
    # The launcher plugins' modules are imported already when one of them is the launcher, and
    # importing them costs nothing (neither imports ray nor submitit at module level).
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    from ._cost import local_grant

    accounting = accounting or {}
    if isinstance(launcher, RayLauncher):
        return RayDispatcher(launcher, check_resources, tuple(accounting.get("gpu_resources") or ("GPU",)))
    if isinstance(launcher, BaseSubmititLauncher):
        from ._slurm import SubmititDispatcher

        return SubmititDispatcher(launcher, poll_interval)
    local = local_grant(accounting.get("local_gpus"), accounting.get("local_cpus"))
    set_up = cast(SetUpLauncher, launcher)  # Hydra's setup() gave it these
    if isinstance(launcher, basic_launcher_class()):
        return InProcessDispatcher(set_up, local)
    return SerialDispatcher(set_up, local)
