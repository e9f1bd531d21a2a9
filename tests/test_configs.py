"""Every option of every config group composes, resolves and instantiates."""

from __future__ import annotations

import re

import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from bench.convert.catalog import load_option
from bench.errors import ConfigError
from bench.paths import CONFIG_DIR
from bench.spec import build_spec
from hydra_plugins.bench_sweeper._space import parse_search_space
from tests.conftest import group_options

pytestmark = pytest.mark.duration(170)

GROUPS = ["model", "task", "search_space", "launcher", "experiment", "pruning"]


def test_every_group_has_options():
    for group in GROUPS:
        assert group_options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_resolves(compose_cfg, group):
    for option in group_options(group):
        cfg = compose_cfg(f"{group}={option}")
        OmegaConf.resolve(cfg)  # every interpolation must have a target
        assert cfg.task.name and cfg.model.name


# Building these costs 2-9 s and 1-3 GB each here; each shares its builder with a small sibling
# that is built below (prithvi_100_tl, terramind_base, dofa_base), and is checked without building.
LARGE = {"prithvi", "prithvi_300_tl", "prithvi_600", "prithvi_600_tl", "terramind_large", "dofa_large"}
TYPES = {"segmentation": "synthetic_seg", "classification": "synthetic_cls"}


def _model_file(model: str):
    return load_option("model", model)


def _synthetic_bands_for(model: str) -> list[str]:
    """Overrides giving the synthetic tasks bands the model takes (Satlas knows NIR_BROAD only)."""
    accepts = _model_file(model).get("accepts_bands")
    if accepts is None or "NIR_NARROW" in accepts:
        return []
    bands = [b for b in ["BLUE", "GREEN", "RED", "NIR_BROAD", "SWIR_1", "SWIR_2"] if b in accepts]
    return [f"task.bands=[{','.join(bands)}]"]


# One task of each kind a model meets: S2 segmentation, classification, multilabel, RGB aerial,
# multi-temporal, SAR, NAIP; every task is composed with the default model above.
KINDS = ["cashew", "eurosat", "big_earth_net", "neontree", "crop_classification", "gb2_kuro_siwo", "chesapeake"]


@pytest.mark.parametrize("model", group_options("model"))
@pytest.mark.parametrize("task", KINDS)
def test_every_model_builds_a_spec_for_each_kind_of_task_or_says_why_not(compose_cfg, model, task):
    try:
        spec = build_spec(compose_cfg(f"model={model}", f"task={task}"))
    except ConfigError as exc:  # a band the model cannot take, or a task type it has no head for
        assert re.search(r"cannot take task '.+' bands|has no neck and decoder for", str(exc)), exc
        return
    cfg = compose_cfg(f"task={task}")
    assert spec.task_kwargs["model_args"].get("num_classes") == cfg.task.num_classes
    assert get_class(spec.datamodule["_target_"])  # the datamodule class exists in TerraTorch
    assert get_class(spec.task_class)


@pytest.mark.parametrize("task", group_options("task"))
def test_every_task_datamodule_instantiates(compose_cfg, task):
    spec = build_spec(compose_cfg(f"task={task}"))
    if "GeoBenchV2" in spec.datamodule["_target_"]:
        return  # geobench_v2's datamodules open their files when built: tests/test_formats_geobench_v2.py
    datamodule = instantiate(spec.datamodule, _convert_="all")
    assert datamodule.batch_size == spec.datamodule["batch_size"]


@pytest.mark.parametrize("model", group_options("model"))
def test_every_catalog_model_names_a_registered_backbone_and_its_weights(model):
    from terratorch.registry import BACKBONE_REGISTRY

    node = _model_file(model)
    assert node.model_args.backbone in BACKBONE_REGISTRY, node.model_args.backbone
    assert node.task_types.segmentation and node.task_types.classification
    if node.model_args.get("backbone_pretrained"):
        weights = node.pretrained_weights
        assert weights.repo_id.count("/") == 1 and weights.filename


@pytest.mark.parametrize("task_type", sorted(TYPES))
@pytest.mark.parametrize("model", [m for m in group_options("model") if m not in LARGE])
def test_every_small_model_builds_and_runs_for_each_task_type(compose_cfg, model, task_type):
    import torch

    # Random init: the hub is unreachable here (pretrained weights are checked in test_errors).
    cfg = compose_cfg(
        f"model={model}",
        f"task={TYPES[task_type]}",
        "model.model_args.backbone_pretrained=false",
        *_synthetic_bands_for(model),
    )
    spec = build_spec(cfg)
    task = get_class(spec.task_class)(**spec.task_kwargs)
    size = cfg.task.image_size
    with torch.no_grad():
        out = task.model(torch.randn(2, len(cfg.task.bands), size, size)).output
    expected = (2, cfg.task.num_classes, size, size) if task_type == "segmentation" else (2, cfg.task.num_classes)
    assert tuple(out.shape) == expected


def _heads() -> list[tuple[str, str]]:
    """(model, head) for every segmentation head a small model's file offers by name (`heads`)."""
    return [(m, head) for m in group_options("model") if m not in LARGE for head in _model_file(m).get("heads") or {}]


@pytest.mark.parametrize(("model", "head"), _heads())
def test_every_segmentation_head_a_model_offers_builds_with_each_width_it_searches(compose_cfg, model, head):
    """model.head picks the decoder (a preset does, for its protocol); each builds a per-pixel output
    with the narrowest and the widest width its search space tries (a trial passes one as
    ++hparams.model_args.decoder_channels). Building a backbone costs seconds: the widths between
    differ only in size, not in shape, so two builds per head prove them."""
    import torch

    overrides = [
        f"model={model}",
        "task=synthetic_seg",
        "model.model_args.backbone_pretrained=false",
        f"model.head={head}",
        *_synthetic_bands_for(model),
    ]
    key = "hparams.model_args.decoder_channels"
    space, _ = parse_search_space({key: compose_cfg(*overrides).model.decoder_channels_space})
    choices = list(space[key].choices)
    for width in dict.fromkeys([choices[0], choices[-1]]):
        cfg = compose_cfg(*overrides, f"++{key}={width}")
        spec = build_spec(cfg)
        model_ = get_class(spec.task_class)(**spec.task_kwargs).model
        assert type(model_.decoder).__name__ == cfg.model.heads[head].decoder
        with torch.no_grad():
            out = model_(torch.randn(2, len(cfg.task.bands), 64, 64)).output
        assert tuple(out.shape) == (2, cfg.task.num_classes, 64, 64), width


@pytest.mark.parametrize("space", group_options("search_space"))
@pytest.mark.parametrize("model", group_options("model"))
def test_every_search_space_parses_into_optuna_distributions(compose_cfg, space, model):
    cfg = compose_cfg(f"search_space={space}", f"model={model}")
    params = OmegaConf.to_container(cfg.search_space, resolve=True)
    distributions, fixed = parse_search_space(params)
    assert set(distributions) | set(fixed) == {key.lstrip("+") for key in params}
    for key in params:
        # Every tuned key must address something the trial config accepts under hparams.
        assert key.lstrip("+").startswith(("hparams.", "probe.")), key  # probe.*: protocol=knn, linear_probe


def test_default_search_space_matches_the_documented_ranges(compose_cfg):
    distributions, _ = parse_search_space(OmegaConf.to_container(compose_cfg().search_space, resolve=True))
    lr = distributions["hparams.lr"]
    assert (lr.low, lr.high, lr.log) == (1e-6, 1e-3, True)
    wd = distributions["hparams.optimizer_hparams.weight_decay"]
    assert (wd.low, wd.high) == (0.0, 0.4)
    assert distributions["hparams.batch_size"].choices == (8, 16, 32)
    assert "hparams.model_args.decoder_channels" in distributions


def test_launcher_local_uses_hydra_basic_launcher():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["launcher=local"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert cfg.hydra.sweep.dir.startswith("multirun_outputs/")
    assert cfg.hydra.run.dir.startswith("multirun_outputs/")


def test_experiment_demo_overrides_task_budget(compose_cfg):
    assert compose_cfg("experiment=demo").task.max_epochs < compose_cfg().task.max_epochs


@pytest.mark.parametrize(
    ("option", "pruner"), [("median", "optuna.pruners.MedianPruner"), ("none", "optuna.pruners.NopPruner")]
)
def test_pruning_picks_the_sweepers_pruner_and_a_preset_can_turn_it_off(option, pruner):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"pruning={option}"], return_hydra_config=True)
        default = compose("config", return_hydra_config=True)
    assert cfg.hydra.sweeper.pruner._target_ == pruner
    assert default.hydra.sweeper.pruner._target_ == "optuna.pruners.MedianPruner"  # bench's default


def test_run_and_sweep_dirs_of_commands_started_in_the_same_second_differ():
    from hydra import compose, initialize_config_dir

    dirs = []
    for _ in range(2):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            hydra = compose("config", return_hydra_config=True).hydra
            dirs.append((hydra.run.dir, hydra.sweep.dir))
    # A timestamp to the second, then a random token: the token alone tells them apart.
    for run_dir, sweep_dir in dirs:
        assert re.fullmatch(r"multirun_outputs/runs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", run_dir), run_dir
        assert re.fullmatch(r"multirun_outputs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", sweep_dir), sweep_dir
    assert dirs[0][0] != dirs[1][0] and dirs[0][1] != dirs[1][1]
