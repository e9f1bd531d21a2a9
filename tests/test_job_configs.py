"""A trial's config made from a copy of its cell's composition (bench_sweeper._job_configs) is the
config Hydra's load_sweep_config composes from nothing, for bench's own conf: value overrides of
every kind, a group a trial chooses, and a misjudged override caught by the first-trial check."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bench.paths import CONFIG_DIR
from hydra_plugins.bench_sweeper._job_configs import JobConfigs

pytestmark = pytest.mark.duration(20)

CELL = ["task=synthetic_cls", "model=prithvi_tiny"]


@pytest.fixture
def hydra_loader(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        master = compose("config", overrides=[f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), master


def _trial(number: int, lr: float, *extra: str) -> list[str]:
    """What the bench sweeper hands a trial: the cell's overrides, the sampled values, trial.*."""
    return [
        *CELL,
        f"hparams.lr={lr}",
        "hparams.batch_size=16",
        f"+hparams.model_args.decoder_channels={32 * (number + 1)}",
        f"++trial.number={number}",
        f"++trial.study='bench[{CELL[0]}]'",
        *extra,
    ]


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=False)


def test_later_trials_of_a_cell_are_copies_identical_to_a_full_composition(hydra_loader):
    loader, master = hydra_loader
    configs = JobConfigs(loader, master)
    for number, lr in enumerate([1e-3, 3e-4, 5e-5]):
        overrides = _trial(number, lr)
        made = configs.get(overrides)
        assert _plain(made) == _plain(loader.load_sweep_config(master, overrides))
        assert made.hparams.lr == lr and made.hparams.model_args.decoder_channels == 32 * (number + 1)
        assert list(made.hydra.overrides.task) == overrides
        assert OmegaConf.is_struct(made)
    # The first trial composed twice (itself, and the cell's shape without its values), then copies.
    assert (configs.composed, configs.copied) == (2, 2)


def test_a_copy_holds_no_value_of_an_earlier_trial(hydra_loader):
    """A dict value merges into the config: merged into a copy of another trial's config it would
    keep that trial's keys. Copies are of the cell's shape, composed with no values at all."""
    loader, master = hydra_loader
    configs = JobConfigs(loader, master)
    first = configs.get([*CELL, "++extra={a: 1}", "hparams.lr=0.1"])
    second = configs.get([*CELL, "++extra={b: 2}", "hparams.lr=0.2"])
    assert configs.copied == 1
    assert first.extra == {"a": 1} and second.extra == {"b": 2}
    assert _plain(second) == _plain(loader.load_sweep_config(master, [*CELL, "++extra={b: 2}", "hparams.lr=0.2"]))


def test_a_group_a_trial_chooses_is_composed(hydra_loader):
    loader, master = hydra_loader
    configs = JobConfigs(loader, master)
    for model in ["prithvi_tiny", "resnet50", "prithvi_tiny", "resnet50"]:
        overrides = ["task=synthetic_cls", f"model={model}", "hparams.lr=0.01"]
        made = configs.get(overrides)
        assert made.model.name == loader.load_sweep_config(master, overrides).model.name
        assert _plain(made) == _plain(loader.load_sweep_config(master, overrides))
    assert configs.copied == 2  # each model's shape composed once, then copied


def test_an_override_misjudged_as_a_value_is_caught_by_the_first_trials_check(hydra_loader, monkeypatch):
    """Were a group override ever taken for a value (Hydra's rules changed), the copy would differ
    from the composition on the shape's first trial: the shape is then always composed."""
    loader, master = hydra_loader
    configs = JobConfigs(loader, master)
    monkeypatch.setattr(configs, "_is_value", lambda override: override.key_or_group != "task")
    for lr in [0.1, 0.2]:
        overrides = [*CELL, f"hparams.lr={lr}"]
        assert _plain(configs.get(overrides)) == _plain(loader.load_sweep_config(master, overrides))
    assert configs.copied == 0 and configs.composed == 3
