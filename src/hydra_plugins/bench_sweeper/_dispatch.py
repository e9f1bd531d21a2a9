"""Hand trials to a Hydra launcher one at a time and collect them as they finish.

Hydra's Launcher.launch() takes a batch and blocks until all of it is done, which is what makes
stock sweepers wait for their slowest trial. bench drives the launchers' own machinery instead:
  - Hydra's basic launcher: its run_job() in this process, one trial at a time;
  - hydra-ray-launcher: what its remote _run_job() does, keeping the ObjectRefs and ray.wait()-ing (_ray.py);
  - hydra-submitit-launcher: executor.submit() of the launcher itself (_slurm.py).
Any other launcher gets one trial at a time through its own launch().
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

from ._cost import Cost, Grant
from ._job_configs import JobConfigs
from ._masking import mask_override
from ._private_apis import basic_launcher_class

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


_job_configs: weakref.WeakKeyDictionary[Any, JobConfigs] = weakref.WeakKeyDictionary()


def job_config(launcher: SetUpLauncher, overrides: list[str], job_num: int) -> DictConfig:
    """The job's config as Hydra's load_sweep_config composes it; a cell's later trials get a copy
    of its first one's composition with their own values (_job_configs.py)."""
    loader = launcher.hydra_context.config_loader
    try:
        configs = _job_configs.get(launcher)
        if configs is None or configs.master is not launcher.config:
            configs = _job_configs[launcher] = JobConfigs(loader, launcher.config)
    except TypeError:  # a launcher that cannot be a weak key (unhashable): composed every time
        configs = None
    sweep_config = (
        configs.get(list(overrides))
        if configs is not None
        else loader.load_sweep_config(launcher.config, list(overrides))
    )
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


def forwarded_env(names: list[str] | Any) -> dict[str, str]:
    """hydra.sweeper.forward_env: the driver's values of those variables that are set, for a launcher
    whose workers do not inherit the driver's environment (Ray). A secret's name is refused."""
    from ._errors import SweepConfigError
    from ._masking import is_secret_key

    names = [str(name) for name in names or []]
    for name in names:
        if not name or "=" in name or is_secret_key(name):
            why = "it is not a variable name" if not name or "=" in name else "it names a secret"
            raise SweepConfigError(
                f"hydra.sweeper.forward_env lists {name!r}, but {why}: forwarded values travel in Ray's "
                "runtime_env, which Ray keeps and shows in clear. Set secrets in the environment of the "
                "cluster's nodes (ray start, the SLURM job) instead."
            )
    return {name: os.environ[name] for name in names if name in os.environ}


def make_dispatcher(
    launcher: Launcher,
    poll_interval: float,
    check_resources: bool = True,
    accounting: Any = None,
    env: dict[str, str] | None = None,
) -> Dispatcher:
    # The launcher plugins' modules are imported already when one of them is the launcher, and
    # importing them costs nothing (neither imports ray nor submitit at module level).
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    from ._cost import local_grant

    accounting = accounting or {}
    if isinstance(launcher, RayLauncher):
        from ._ray import RayDispatcher

        return RayDispatcher(launcher, check_resources, tuple(accounting.get("gpu_resources") or ("GPU",)), env)
    if isinstance(launcher, BaseSubmititLauncher):
        from ._slurm import SubmititDispatcher

        return SubmititDispatcher(launcher, poll_interval)
    local = local_grant(accounting.get("local_gpus"), accounting.get("local_cpus"))
    set_up = cast(SetUpLauncher, launcher)  # Hydra's setup() gave it these
    if isinstance(launcher, basic_launcher_class()):
        return InProcessDispatcher(set_up, local)
    return SerialDispatcher(set_up, local)
