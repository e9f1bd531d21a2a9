"""The catalog as a user meets it: each preset's dry run prints every cell with its task's metric
and direction, then lists each missing input once; bands a model cannot take, task types it has
no head for and impossible partitions are refused before launch; per-model resources reach the
launcher; classification cells do not search a decoder width."""

from __future__ import annotations

import re

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.convert.catalog import load_option
from bench.errors import ConfigError
from bench.paths import CONFIG_DIR
from bench.spec import build_spec
from tests.conftest import group_options

pytestmark = pytest.mark.duration(40)

CELL = re.compile(r"^cell task=(\S+),model=(\S+): (\w+) (\S+)$", re.M)


def preset_tasks(preset: str) -> list[str]:
    return list(OmegaConf.load(CONFIG_DIR / "experiment" / f"{preset}.yaml").hydra.sweeper.cells.task)


def compose_task(preset: str, task: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"experiment={preset}", f"task={task}", "output_dir=unused"])


def task_file(task: str):
    return OmegaConf.load(CONFIG_DIR / "task" / f"{task}.yaml")


@pytest.mark.parametrize(
    "preset,models",
    [
        ("geobench_v1", ("prithvi", "resnet50")),
        ("hls", ("prithvi", "resnet50")),
        ("geobench_v2", ("prithvi", "terramind_base")),
    ],
)
def test_preset_dry_run_lists_every_cell_then_each_missing_input_once(run_cli, tmp_path, preset, models):
    missing = tmp_path / "no-data"
    result = run_cli(
        "-m",
        f"experiment={preset}",
        f"model={','.join(models)}",
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={
            var: str(missing)
            for var in (
                "GEO_BENCH_DIR",
                "GEO_BENCH_V2_DIR",
                "SEN1FLOODS11_DIR",
                "HLS_BURN_SCARS_DIR",
                "CROP_CLASSIFICATION_DIR",
            )
        }
        | {"HF_HUB_OFFLINE": "1"},
    )
    tasks = preset_tasks(preset)
    cells = CELL.findall(result.stdout)
    assert sorted((t, m) for t, m, _, _ in cells) == sorted((t, m) for t in tasks for m in models)
    for task, _, direction, metric in cells:  # the task file's own metric and direction
        assert (metric, direction) == (task_file(task).metric, task_file(task).direction), task
    # 16 trials a cell, except where a task gives its own count (GEO-Bench-2's detection datasets: 10)
    trials = sum(compose_task(preset, task).task.n_trials or 16 for task in tasks) * 2
    assert re.search(rf"^{2 * len(tasks)} cell\(s\): {trials} tuning trials \+ 5 repeats each", result.stdout, re.M)
    # Then nothing is launched: each missing dataset once (however many models share it), with how
    # to get it, and each model's unreachable weights once.
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for task in tasks:
        name = task_file(task).name
        assert result.stderr.count(f"Dataset for task '{name}' not found") == 1, task
    for model in models:
        assert result.stderr.count(f"model={model} needs pretrained weights") == 1, model
    assert not (tmp_path / "sweep").exists()


def test_the_geobench_v1_preset_has_terratorch_iterates_budget(run_cli, tmp_path):
    """16 trials, lr 1e-6..1e-3 (log), weight decay 0..0.4, batch size {8, 32, 64}, decoder widths
    only where iterate searches them (not ResNet-50's), patience 50 over at most 300 epochs, the
    0.10x_train partition, then 5 repeats (tests/test_protocol_presets.py holds each to iterate's file)."""
    result = run_cli("experiment=geobench_v1", "task=chesapeake", "model=resnet50", "--cfg", "job")
    job = yaml.safe_load(result.stdout)
    assert (job["task"]["partition"], job["task"]["patience"], job["task"]["max_epochs"]) == ("0.10x_train", 50, 300)
    plan = run_cli(
        "-m",
        "experiment=geobench_v1",
        "model=resnet50",
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"GEO_BENCH_DIR": str(tmp_path / "no-data")},
    ).stdout
    assert re.search(r"^12 cell\(s\): 192 tuning trials \+ 5 repeats each", plan, re.M)
    blocks = dict(re.findall(r"^cell task=(\w+)[,:][^\n]*\n((?:  .*\n)+)", plan, re.M))
    for task, block in blocks.items():
        assert "hparams.lr: tag(log, interval(1e-6, 1e-3))" in block, task
        assert "hparams.optimizer_hparams.weight_decay: interval(0.0, 0.4)" in block, task
        assert "hparams.batch_size: choice(8, 32, 64)" in block, task
    assert "decoder_channels" not in blocks["chesapeake"] and "decoder_channels" not in blocks["eurosat"]


def test_classification_cells_do_not_search_a_decoder_width(run_cli, tmp_path):
    result = run_cli(
        "-m",
        "task=eurosat,chesapeake",
        "model=resnet50",
        "search_space=geobench_v1",
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"GEO_BENCH_DIR": str(tmp_path / "no-data")},
    )
    blocks = dict(re.findall(r"^cell task=(\w+)[,:][^\n]*\n((?:  .*\n)+)", result.stdout, re.M))
    assert "hparams.lr" in blocks["eurosat"] and "hparams.lr" in blocks["chesapeake"]
    assert "decoder_channels" not in blocks["eurosat"] and "decoder_channels" in blocks["chesapeake"]


def test_a_band_the_model_cannot_take_is_named_before_launch(compose_cfg):
    with pytest.raises(ConfigError, match=r"model=prithvi cannot take task 'so2sat' bands VV_REAL") as info:
        build_spec(compose_cfg("task=so2sat", "model=prithvi", "task.bands=[VV_REAL,RED]"))
    assert "task.bands=[RED]" in str(info.value)  # the subset it can take


def test_a_band_the_dataset_does_not_offer_is_named(compose_cfg):
    with pytest.raises(ConfigError, match=r"task\.bands has PANCHROMATIC, which the dataset does not offer"):
        build_spec(compose_cfg("task=eurosat", "task.bands=[RED,PANCHROMATIC]"))


def test_an_impossible_partition_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"task\.partition='0\.3x_train' is not one of this dataset's partitions"):
        build_spec(compose_cfg("task=eurosat", "task.partition=0.3x_train"))


def test_a_task_type_the_model_has_no_head_for_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"model=prithvi_tiny has no neck and decoder for regression tasks"):
        build_spec(
            compose_cfg(
                "task=synthetic_seg",
                "task.type=regression",
                "task.metric=val/RMSE",
                "task.direction=minimize",
                "model.task_types.regression=null",
            )
        )


def _launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_a_models_resources_override_the_launchers_defaults():
    default = _launcher("launcher=slurm", "model=prithvi_tiny")
    big = _launcher("launcher=slurm", "model=prithvi_tiny", "+model.resources={gpus_per_trial: 2, memory_gb: 96}")
    assert (default.gpus_per_node, default.mem_gb) == (1, 32)
    assert (big.gpus_per_node, big.mem_gb) == (2, 96)
    # The command line still wins over both.
    pinned = _launcher("launcher=slurm", "+model.resources={gpus_per_trial: 2}", "launcher.gpus_per_trial=4")
    assert pinned.gpus_per_node == 4
    ray = _launcher("launcher=ray", "+model.resources={gpus_per_trial: 2, cpus_per_trial: 16}")
    assert (ray.ray.remote.num_gpus, ray.ray.remote.num_cpus) == (2, 16)


@pytest.mark.parametrize("model", [m for m in group_options("model") if load_option("model", m).get("resources")])
def test_catalog_resources_reach_the_launcher(model):
    stated = load_option("model", model).resources
    launcher = _launcher("launcher=slurm", f"model={model}")
    if stated.get("gpus_per_trial") is not None:
        assert launcher.gpus_per_node == stated.gpus_per_trial
    if stated.get("memory_gb") is not None:
        assert launcher.mem_gb == stated.memory_gb
