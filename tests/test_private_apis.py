"""The one Hydra internal the sweeper's planning relies on (_private_apis.config_files_read_once):
these tests fail when a Hydra release changes what it relies on, or when composing through it gives
a config that composing without it would not."""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import CachingConfigRepository
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.bench_sweeper._private_apis import config_files_read_once

STUB_CONF = Path(__file__).parent / "stub_app" / "conf"
CELLS = [["task=a", "model=x"], ["task=a", "model=y"], ["task=b", "model=x"], ["task=b", "model=y", "+extra=1"]]


def test_hydra_is_the_version_the_adapter_was_written_for():
    assert hydra.__version__.startswith("1.3."), "check _private_apis.config_files_read_once, then the pin"


def test_the_hydra_internals_the_adapter_relies_on_are_unchanged():
    # ConfigLoaderImpl keeps its repository in `repository` and wraps it in a fresh
    # CachingConfigRepository, which deep-copies it, for every composition ...
    assert "CachingConfigRepository(self.repository)" in inspect.getsource(ConfigLoaderImpl)
    assert "copy.deepcopy(delegate)" in inspect.getsource(CachingConfigRepository.__init__)
    # ... whose constructor and load_config() the adapter's subclass overrides with these signatures.
    assert list(inspect.signature(CachingConfigRepository.__init__).parameters) == ["self", "delegate"]
    assert list(inspect.signature(CachingConfigRepository.load_config).parameters) == ["self", "config_path"]


@pytest.fixture
def loader():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(STUB_CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        assert isinstance(loader, ConfigLoaderImpl) and loader.repository is not None
        yield loader
    GlobalHydra.instance().clear()


def compose_cells(loader: ConfigLoaderImpl) -> list[str]:
    primary = loader.load_configuration("config", ["task=a,b"], run_mode=RunMode.MULTIRUN)
    return [OmegaConf.to_yaml(loader.load_sweep_config(primary, cell)) for cell in CELLS + CELLS[:1]]


def test_composing_through_the_adapter_gives_byte_identical_configs(loader):
    plain = compose_cells(loader)
    original = loader.repository
    with config_files_read_once(loader):
        assert loader.repository is not original  # the adapter is in place
        cached = compose_cells(loader)
        assert loader.repository.pickled  # and composition read the files through it
    assert loader.repository is original  # and gone afterwards
    assert cached == plain
    assert cached[0] == cached[-1]  # a file read once, composed twice: no edit of the first leaks


def test_a_journal_storage_says_how_far_into_its_file_it_has_read(tmp_path):
    """journal_bytes_read (optuna<6: JournalFileBackend's record offsets) is what lets a process keep one
    JournalStorage per journal (open_storage): after a read it is the file's size."""
    import os

    import optuna

    from hydra_plugins.bench_sweeper._private_apis import journal_bytes_read
    from hydra_plugins.bench_sweeper._studies import open_storage

    journal = str(tmp_path / "optuna.journal")
    storage = open_storage(journal)
    optuna.create_study(study_name="a", storage=storage).enqueue_trial({"x": 1})
    storage.get_all_studies()
    assert journal_bytes_read(storage) == os.path.getsize(journal) > 0
    assert journal_bytes_read(optuna.storages.InMemoryStorage()) == 0


def test_hydras_singleton_state_is_set_as_set_state_sets_it_but_the_plugin_registry_stays():
    """_private_apis.set_hydra_state, what a reused Ray worker runs before each trial: the driver's
    ConfigStore and resolvers, as Singleton.set_state() gives them, without a new plugin scan."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    from hydra_plugins.bench_sweeper._private_apis import set_hydra_state

    assert "Plugins.instance()" in inspect.getsource(Singleton.set_state)  # what it would redo
    saved = Singleton.get_state()
    try:
        ConfigStore.instance().store(name="from_the_driver", node={"x": 1})
        OmegaConf.register_new_resolver("from_the_driver", lambda: 1, replace=True)
        driver_state = Singleton.get_state()
        ConfigStore.instance().store(name="worker_only", node={"y": 2})
        plugins = Plugins.instance()
        set_hydra_state(driver_state)
        assert Plugins.instance() is plugins  # no new scan
        repo = ConfigStore.instance().repo
        assert "from_the_driver.yaml" in repo and "worker_only.yaml" not in repo
        assert OmegaConf.has_resolver("from_the_driver")
        Singleton._instances.pop(Plugins)  # a fresh worker: Hydra's own path builds the registry
        set_hydra_state(driver_state)
        assert Plugins.instance() is not plugins and "from_the_driver.yaml" in ConfigStore.instance().repo
    finally:
        Singleton.set_state(saved)


def test_a_trials_values_are_applied_with_hydras_own_rules():
    """_private_apis.apply_value_overrides and overrides_dirname (bench_sweeper._job_configs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.bench_sweeper._private_apis import apply_value_overrides, overrides_dirname

    cfg = OmegaConf.create({"a": {"b": 1}, "c": 2})
    OmegaConf.set_struct(cfg, True)
    parsed = OverridesParser.create().parse_overrides(["a.b=5", "+d=3", "++a.e=4", "~c"])
    apply_value_overrides(parsed, cfg)
    assert OmegaConf.to_container(cfg) == {"a": {"b": 5, "e": 4}, "d": 3}
    assert overrides_dirname(parsed, "=", ",", ["d"]) == "++a.e=4,a.b=5,~c"
