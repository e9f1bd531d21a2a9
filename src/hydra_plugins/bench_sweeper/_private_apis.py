"""Every private API of another library that the sweeper relies on, each behind one function.

The versions these were tested with are pinned with upper bounds in pyproject.toml; after upgrading
one of those libraries, this is the file to check. Imports are local: Hydra's plugin scan must not
pull in optuna, ray or submitit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn
    from optuna.trial import FrozenTrial, Trial


def trial_id(trial: Trial | FrozenTrial) -> int:
    """The storage id of an Optuna Trial or FrozenTrial (optuna<6: no public accessor)."""
    return int(trial._trial_id)


def trial_by_id(study: optuna.Study, storage_id: int) -> Trial:
    """A live optuna.trial.Trial for a RUNNING trial given its storage id: how a job finds the trial
    the driver asked for, and how a driver takes over one an earlier driver left (optuna<6: the
    constructor is not meant for users)."""
    import optuna

    return optuna.trial.Trial(study, storage_id)


def running_trial(study: optuna.Study, frozen: FrozenTrial) -> Trial:
    """A live Trial for a RUNNING FrozenTrial, so user attributes can still be set before it is told."""
    return trial_by_id(study, trial_id(frozen))


def journal_bytes_read(storage: Any) -> int:
    """How far into its file a JournalStorage has read (optuna<6: JournalFileBackend's offset of the next
    record, no public accessor); 0 for any other storage."""
    offsets = getattr(getattr(storage, "_backend", None), "_log_number_offset", None)
    return max(offsets.values()) if offsets else 0


def override_value_text(value: Any) -> str:
    """A parsed override value (list, dict, ...) back in override syntax (hydra-core<1.4)."""
    from hydra.core.override_parser.types import Override

    return Override._get_value_element_as_str(value)


def job_outcome(job_return: JobReturn) -> tuple[bool, Any]:
    """(completed, return value or exception) of a Hydra JobReturn. Its public `return_value`
    prints "Error executing job with overrides: <overrides>" to stderr and re-raises (hydra-core<1.4)."""
    from hydra.core.utils import JobStatus

    return job_return.status == JobStatus.COMPLETED, job_return._return_value


def ray_start() -> Any:
    """hydra-ray-launcher's Ray start-up, ray.init() from its `init` config (hydra-ray-launcher<1.3)."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

    return start_ray


def set_hydra_state(state: Any) -> None:
    """Hydra's singletons (its ConfigStore, JobRuntime, ...) and OmegaConf's resolvers from the
    driver's Singleton.get_state(), as hydra-ray-launcher's remote _run_job sets them in a worker,
    but keeping the worker's plugin registry once it has one. Singleton.set_state() drops it and
    scans every installed Hydra plugin again: 116 ms of each Ray trial's start (median of 160, 4
    workers on 2 cores), for the same plugins each time in the same worker (hydra-core<1.4:
    the registry lives in Singleton._instances)."""
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    plugins = Singleton._instances.get(Plugins)
    if plugins is None:  # the worker's first trial: Hydra's own, which builds the registry
        Singleton.set_state(state)
        return
    Singleton._instances = {**state["instances"], Plugins: plugins}
    from omegaconf.basecontainer import BaseContainer

    BaseContainer._resolvers = copy.deepcopy(state["omegaconf_resolvers"])


def submitit_executor_name(launcher: Any) -> str:
    """ "slurm" or "local" for a hydra-submitit-launcher launcher (hydra-submitit-launcher<1.3)."""
    return str(launcher._EXECUTOR)


def apply_value_overrides(overrides: list[Any], cfg: Any) -> None:
    """Hydra's own application of parsed value overrides (key=v, +key=v, ++key=v, ~key) to a
    composed config, the last step of its composition (hydra-core<1.4: ConfigLoaderImpl's static
    _apply_overrides_to_config). _job_configs.py applies a trial's values to a copy of its cell's
    composed config with it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def overrides_dirname(overrides: list[Any], kv_sep: str, item_sep: str, exclude_keys: list[str]) -> str:
    """hydra.job.override_dirname as Hydra computes it from the parsed app overrides (hydra-core<1.4:
    hydra._internal.config_loader_impl.get_overrides_dirname)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return str(get_overrides_dirname(overrides, exclude_keys, item_sep, kv_sep))


def basic_launcher_class() -> type:
    """Hydra's basic (in-process) launcher class, which lives in hydra._internal (hydra-core<1.4)."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return BasicLauncher


def callbacks_of(hydra_callbacks: Any) -> list[Any]:
    """The callback objects of Hydra's Callbacks collection (hydra.callbacks in the config); Hydra
    keeps them in an attribute it does not document (hydra-core<1.4)."""
    return list(getattr(hydra_callbacks, "callbacks", None) or [])


@contextlib.contextmanager
def config_files_read_once(loader: Any) -> Iterator[None]:
    """Compose many cells without reading and parsing every YAML file again for each (hydra-core<1.4:
    ConfigLoaderImpl wraps a deep copy of its `repository` in a fresh CachingConfigRepository per
    composition, so a 24-cell plan parsed each file 24 times). A caching repository that copies as
    itself, kept underneath for the planning pass, parses each file once and hands out copies
    (composition edits the configs it loads: the primary one gets the `+key` overrides). Every cell
    of one plan has the same search path. Each copy is unpickled from bytes kept with the file: for
    OmegaConf containers that is about 6x faster than copy.deepcopy.
    Measured (benchmarks/catalog_dry_run.py, CPU seconds of the whole dry run, planning on one core):
    experiment=geobench_v2 (38 cells) 7.3-8.1 s without it, 5.2-5.4 s with it; geobench_v1 (24 cells)
    5.2-5.7 s -> 3.3-3.4 s. tests/test_private_apis.py fails when Hydra changes what this relies on."""
    import pickle

    from hydra._internal.config_repository import CachingConfigRepository

    class SharedCache(CachingConfigRepository):
        def __init__(self, delegate: Any) -> None:
            super().__init__(delegate)
            self.pickled: dict[str, bytes] = {}

        def __deepcopy__(self, memo: dict[int, Any]) -> SharedCache:
            return self

        def load_config(self, config_path: str) -> Any:
            if config_path not in self.pickled:
                loaded = super().load_config(config_path)
                if loaded is None:
                    return None
                self.pickled[config_path] = pickle.dumps(loaded)
            return pickle.loads(self.pickled[config_path])

    original = getattr(loader, "repository", None)
    if original is None:  # another loader: compose as it does
        yield
        return
    loader.repository = SharedCache(original)
    try:
        yield
    finally:
        loader.repository = original
