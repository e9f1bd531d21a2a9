"""Multi-process trials (DDP on one node): one trial trained by N processes, whatever launched it.

The trial's own process is global rank 0: the process the launcher started (a Ray task, a SLURM
job, the local launcher's process) keeps its MLflow run, its Optuna trial and its result, exactly
as a one-process trial does. When Lightning launches the strategy, rank 0 starts ranks 1..N-1 as
`python -m bench.ddp <config>` (see docs/launchers.md for why not Lightning's own launchers: its
subprocess launcher re-runs sys.argv, which inside a Ray worker or a submitit job is the worker's
own command; its spawn launcher pickles the Trainer, with the Optuna trial and the MLflow logger).
A child rank loads the job's resolved config, builds the same datamodule, task and callbacks, and
joins the process group; it opens no MLflow run, reports nothing to Optuna and returns nothing.

  trainer_setup(cfg, processes)   the strategy and environment for the Trainer (no torch at import)
  reap_children()                 rank 0, once the trial is over: children gone, by PID
  record_rank(output_dir)         every rank writes ranks/<rank>.json (pid, world size)

The global batch stays the configured batch size: each of N ranks loads batch_size / N, and DDP
averages the gradients, so a trial's hyperparameters mean the same at any process count.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

log = logging.getLogger(__name__)

WORKER_ENV = "BENCH_DDP_RANK"  # set in a child rank's environment: its local rank
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_REAP_GRACE_S = 60.0  # how long rank 0 waits for a child to finish on its own before killing it
_children: list[subprocess.Popen] = []  # this process's child ranks, reaped by reap_children()
_observers: list[Any] = []  # their watchers, stopped by reap_children() before it waits


def is_child_rank() -> bool:
    return WORKER_ENV in os.environ


def srun_ranks(cfg: DictConfig) -> int:
    """How many ranks SLURM started for this trial: its job's tasks (launcher.ranks_from_srun, the
    SLURM preset, asks for one task per process: srun starts them all, each running the whole job,
    and Lightning's SLURM environment makes them the ranks). 0 when the ranks are not srun's: any
    other launcher, or a job of one task."""
    return _srun_tasks() if (cfg.get("launcher") or {}).get("ranks_from_srun") else 0


def _srun_tasks() -> int:
    """The tasks of the srun step this process is one of, when there are several; else 0."""
    if "SLURM_PROCID" not in os.environ:
        return 0
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    return tasks if tasks > 1 else 0


def adopt_srun_rank(cfg: DictConfig) -> bool:
    """In a job whose ranks srun started: True in every task but the first, which then trains as a
    child rank does (no MLflow run, no Optuna reports, no result)."""
    if srun_ranks(cfg) and os.environ["SLURM_PROCID"] != "0":
        os.environ[WORKER_ENV] = os.environ.get("SLURM_LOCALID", os.environ["SLURM_PROCID"])
        return True
    return False


def train_as_child(cfg: DictConfig) -> None:
    """A child rank's trial: a prune broadcast from rank 0 ends it like rank 0, quietly."""
    import optuna

    from bench.train import train

    try:
        train(cfg)
    except optuna.TrialPruned:
        pass


def per_rank_batch_size(batch_size: int, processes: int) -> int:
    """The batch each rank loads, so that the global batch stays `batch_size`."""
    if batch_size % processes:
        raise ConfigError(
            f"batch size {batch_size} with {processes} processes per trial: the global batch is split "
            f"evenly between the processes, so use a multiple of {processes}."
        )
    return batch_size // processes


def prepare(
    cfg: DictConfig, output_dir: Path, processes: int, trainer_args: dict[str, Any], tracking: Any = None
) -> int:
    """A trial of `processes` processes: its Trainer arguments, its world size tagged on its MLflow
    run (rank 0's; a child rank has none). Returns the OOM retries it may make: none, since a retry
    would need new ranks, started by a new Trainer."""
    trainer_args.update(trainer_setup(cfg, output_dir, processes))
    if int(cfg.get("oom_retries", 3) or 0):
        log.info("%d processes per trial: no out-of-memory retries (a retry would need new ranks)", processes)
    if tracking is not None:
        tracking.tag({"bench.world_size": processes})
    return 0


def refuse_folds(processes: int) -> None:
    if processes > 1:  # each fold's Trainer would start ranks of its own while the first ones run on
        raise ConfigError("k-fold tuning (hydra.sweeper.folds) with several processes per trial is not supported.")


def trainer_setup(cfg: DictConfig, output_dir: Path, processes: int) -> dict[str, Any]:
    """Trainer arguments for a trial of `processes` processes on this node. Ranks srun started:
    DDP in Lightning's SLURM environment (ranks and address from SLURM's variables; requeues are
    submitit's, not Lightning's). Otherwise a DDP strategy whose launcher starts the children as
    `python -m bench.ddp`, and Lightning's plain environment."""
    from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    if tasks := srun_ranks(cfg):
        if tasks != processes:
            raise ConfigError(
                f"this SLURM job has {tasks} tasks but its trial trains with {processes} processes: the job's "
                "hydra.launcher.tasks_per_node must be the trial's process count (launcher=slurm sets it)."
            )
        return {"strategy": DDPStrategy(), "plugins": [SLURMEnvironment(auto_requeue=False)]}
    config_path = None if is_child_rank() else _write_job_config(cfg, output_dir)
    return {"strategy": _strategy(config_path), "plugins": [LightningEnvironment()]}


def _write_job_config(cfg: DictConfig, output_dir: Path) -> Path:
    """The job's config with its Hydra node (the trial's phase and number live there), for the
    children to rebuild the same trial from. Unresolved, as Hydra saves .hydra/config.yaml: a child
    inherits rank 0's environment and resolves `${oc.env:...}` itself, so no environment value (a
    secret's included) is written here; owner-only all the same, like the journal."""
    from hydra.core.hydra_config import HydraConfig

    root = OmegaConf.create({"cfg": OmegaConf.to_container(cfg, resolve=False)})
    if HydraConfig.initialized():
        root.hydra = HydraConfig.get()
    path = output_dir / "ranks" / "job_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(OmegaConf.to_yaml(root))
    return path


def _strategy(config_path: Path | None):
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    class _Observer(_ChildProcessObserver):
        """Lightning's watcher: a child rank that dies mid-trial takes the whole group down, rank 0
        included (it would otherwise wait in its next collective until the backend's timeout).
        Stopped once the trial is over, so the ranks reap_children() kills do not count."""

        stopped = False

        def _run(self) -> bool:
            return True if self.stopped else super()._run()

    class _ChildRankLauncher(_SubprocessScriptLauncher):
        """Lightning's subprocess launcher, starting `python -m bench.ddp <config>` instead of
        sys.argv, once per trial (a later fit or test of the same Trainer finds them running), and
        leaving the launch variables as they were (a later one-process trial in this process)."""

        def launch(self, function, *args: Any, trainer=None, **kwargs: Any) -> Any:
            self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
            if not self.cluster_environment.creates_processes_externally and not self.procs:
                saved = {key: os.environ.get(key) for key in _LAUNCH_ENV}
                try:
                    self._start_children()
                finally:
                    _restore(saved)
                observer = _Observer(os.getpid(), self.procs)
                observer.start()
                _observers.append(observer)
            return function(*args, **kwargs)

        def _start_children(self) -> None:
            env = self.cluster_environment
            os.environ.update(
                MASTER_ADDR=env.main_address,
                MASTER_PORT=str(env.main_port),
                NODE_RANK="0",
                LOCAL_RANK="0",
                WORLD_SIZE=str(self.num_processes),
            )
            for local_rank in range(1, self.num_processes):
                child_env = {**os.environ, "LOCAL_RANK": str(local_rank), WORKER_ENV: str(local_rank)}
                command = [sys.executable, "-m", "bench.ddp", str(config_path)]
                self.procs.append(subprocess.Popen(command, env=child_env, preexec_fn=_die_with_parent))
            _children.extend(self.procs)

    class BenchDDPStrategy(DDPStrategy):
        def _configure_launcher(self) -> None:
            assert self.cluster_environment is not None
            self._launcher = _ChildRankLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    return BenchDDPStrategy()


def _die_with_parent() -> None:
    """In a child rank, before it runs: killed when rank 0's process dies, however it dies (Ray
    cancelling the task, SLURM killing the job step, SIGKILL), instead of waiting on it, orphaned,
    in a collective. Linux only; elsewhere nothing."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def reap_children(grace_s: float = _REAP_GRACE_S) -> list[int]:
    """Rank 0 at the end of a trial, whatever its end (a result, a prune, an error): each child
    rank exits on its own once it has finished the same trial; one still running after `grace_s`
    (rank 0 failed alone and left it waiting in a collective) is killed. Returns their PIDs."""
    pids = []
    while _observers:
        _observers.pop().stopped = True
    if _children:
        _end_process_group()
    while _children:
        proc = _children.pop()
        pids.append(proc.pid)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("rank process %d still running %.0f s after the trial ended: killed", proc.pid, grace_s)
            proc.kill()
            proc.wait()
    return pids


def _end_process_group() -> None:
    """The trial's process group destroyed, and the address Lightning exported for it dropped, so
    a later multi-process trial in this process (the local launcher) starts a group of its own."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def rank_callbacks(output_dir: Path) -> list:
    from bench.lightning_callbacks import RankRecord

    return [RankRecord(output_dir)]


def record_rank(output_dir: Path, rank: int, world_size: int) -> None:
    """ranks/<rank>.json: which process trained as this rank (the tests check every rank ran, and
    that none is left behind)."""
    path = output_dir / "ranks" / f"{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    started_by = "srun" if _srun_tasks() else "rank 0" if rank else "launcher"
    path.write_text(json.dumps({"rank": rank, "pid": os.getpid(), "world_size": world_size, "started_by": started_by}))


def _child_main(config_path: str) -> int:
    """A child rank: the same trial as rank 0, built from the job's config; a prune broadcast from
    rank 0 ends it like rank 0, and quietly (exit 0: Lightning's process observer kills the whole
    group when a child fails)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals

    setup_globals()  # Hydra's resolvers (${hydra:...}, ${now:...}), as a launcher registers them in a job
    root = OmegaConf.load(config_path)
    if "hydra" in root:
        # What HydraConfig.get() returns in the job (the trial's node, its sweeper's trial_key), the
        # Hydra node's interpolations resolving against the job's config as there. Not set_config(),
        # which wants the node typed as Hydra's own dataclass.
        HydraConfig.instance().cfg = OmegaConf.merge(root.cfg, {"hydra": root.hydra})  # type: ignore[assignment]
    # A root of its own: the saved config is unresolved, and its absolute interpolations
    # (${task.num_classes}) resolve against the job's config, not against the file's wrapper.
    cfg = OmegaConf.create(OmegaConf.to_container(root.cfg, resolve=False))
    assert isinstance(cfg, DictConfig)
    logging.basicConfig(level=logging.WARNING, format=f"[rank {os.environ[WORKER_ENV]}] %(levelname)s %(message)s")
    train_as_child(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
