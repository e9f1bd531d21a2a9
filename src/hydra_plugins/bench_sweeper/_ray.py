"""Trials on a Ray cluster: hydra-ray-launcher's own remote job, one task per trial, collected with
ray.wait() as they finish (_dispatch.py says why not through the launcher's launch())."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from omegaconf import OmegaConf

from ._cost import Grant, ray_grant
from ._dispatch import Dispatcher, Finished, Prepared, job_config, launch_line
from ._errors import LaunchError
from ._private_apis import ray_start, set_hydra_state

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)


class RayDispatcher(Dispatcher):
    prepare_ahead = True

    def __init__(
        self,
        launcher: Any,
        check_resources: bool = True,
        gpu_resources: tuple[str, ...] = ("GPU",),
        env: dict[str, str] | None = None,
    ) -> None:
        import ray

        start_ray = ray_start()
        self.gpu_resources = gpu_resources
        setup_globals()
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
        Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.ray, self.launcher = ray, launcher
        # Unlike hydra-ray-launcher's launch(), do not force object_store_memory: Ray refuses it
        # when connecting to an existing cluster. The launcher preset sets it for local starts.
        start_ray(launcher.ray_cfg.init)
        # What hydra-ray-launcher's remote function does (run_job_timed), but declared once (its launch()
        # re-declares and re-exports it for every job), and the parts of its arguments that are
        # the same for every trial are put in the object store once instead of pickled per trial.
        options = _remote_options(launcher.ray_cfg.remote)
        self.check_resources, self.address = check_resources, launcher.ray_cfg.init.get("address")
        self.placeable: set[str] = set()  # requests checked against the cluster already
        self._check_placeable(options)
        # hydra.sweeper.forward_env: the driver's values, in every task's runtime_env (merged with
        # any the launcher's remote options give; a Ray worker does not inherit the driver's environment).
        self.env = dict(env or {})
        self.options = options = self._with_env(options)
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
        options = self._with_env(_remote_options(config.hydra.launcher.ray.remote))
        run_job = self.run_job
        if options != self.options:
            self._check_placeable(options)
            run_job = run_job.options(**options)
        ref = run_job.remote(sweep_config=config, **self.shared)
        self.pending[ref] = ticket

    def _with_env(self, options: dict[str, Any]) -> dict[str, Any]:
        if not self.env:
            return options
        runtime_env = dict(options.get("runtime_env") or {})
        runtime_env["env_vars"] = {**self.env, **(runtime_env.get("env_vars") or {})}
        return {**options, "runtime_env": runtime_env}

    def _check_placeable(self, options: dict[str, Any]) -> None:
        options = {k: v for k, v in options.items() if k != "runtime_env"}
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


def run_job_timed(
    hydra_context: Any, sweep_config: DictConfig, task_function: Any, singleton_state: Any
) -> tuple[JobReturn, float]:
    """What hydra-ray-launcher's remote _run_job does (Hydra's globals and state, then Hydra's
    run_job), keeping a reused worker's plugin registry (set_hydra_state); timed where it runs:
    the time a trial held its resources, not the time it waited in Ray's queue."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job

    started = time.monotonic()
    setup_globals()
    set_hydra_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    job_return = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
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
