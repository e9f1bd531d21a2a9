"""bench.convert on terratorch-iterate's own benchmark configs (tests/data/iterate, unmodified):
the converted preset's dry run has iterate's tasks, search space and trial budget, and the
converter names each known defect instead of copying it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from bench.convert.cli import main
from bench.paths import CONFIG_DIR
from bench.spec import build_spec
from tests.warm_cli import python_m

pytestmark = pytest.mark.duration(45)

ITERATE = Path(__file__).parent / "data" / "iterate"
CONFIGS = sorted(p.name for p in ITERATE.glob("*.yaml"))


def convert(config: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    return python_m("bench.convert", str(ITERATE / config), "--out", str(out), *args, timeout=120)


def iterate_plan(config: str) -> dict:
    raw = yaml.safe_load((ITERATE / config).read_text())
    space = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict) and not {"min", "max"} <= set(value):
                walk(value, f"{prefix}{key}.")
            else:
                space[f"hparams.{prefix}{key}"] = value

    walk(raw.get("optimization_space") or {})
    return {
        "tasks": [t["name"] for t in raw["tasks"]],
        "n_trials": raw["n_trials"],
        "space": space,
        "except": {t["name"]: t.get("optimization_except") or [] for t in raw["tasks"]},
    }


@pytest.mark.parametrize("config", CONFIGS)
def test_converted_preset_dry_runs_as_iterate_would(config, tmp_path):
    result = convert(config, tmp_path / "conf")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert command.startswith("python -m bench --config-dir ") and " -m experiment=" in command
    expected = iterate_plan(config)

    args = command.split()[3:]  # after `python -m bench`
    dry = python_m(
        "bench",
        *args,
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "GEO_BENCH_DIR": str(tmp_path / "no-data"), "HF_HUB_OFFLINE": "1"},
    )
    plan = dry.stdout
    # Without the data and offline, the plan is printed, then each missing input is listed once.
    assert "Dry run: nothing launched." in plan, dry.stderr[-3000:]
    n = len(expected["tasks"])
    assert re.search(rf"^{n} cell\(s\): {n * expected['n_trials']} tuning trials", plan, re.M), plan[:500]
    stem = re.sub(r"[^a-z0-9]+", "_", Path(config).stem.lower())
    cells = re.findall(r"^cell (?:task=)?(\S+): (\w+) (\S+)$", plan, re.M)
    # One task is one cell with nothing swept, which the sweeper labels `default`.
    tasks = [f"{stem}_{name}" for name in expected["tasks"]]
    assert [c[0] for c in cells] == (tasks if n > 1 else ["default"])
    assert yaml.safe_load((tmp_path / "conf" / "experiment" / f"{stem}.yaml").read_text())["hydra"]["sweeper"][
        "cells"
    ] == {"task": tasks}
    for _, direction, metric in cells:  # terratorch 1.2.11's names, never the pre-1.0.3 ones
        assert direction == "maximize" and metric in {"val/mIoU", "val/Accuracy_Micro", "val/Multilabel_F1_Score"}
    blocks = re.split(r"^cell ", plan, flags=re.M)[1:]
    for name, block in zip(expected["tasks"], blocks):
        searched = dict(re.findall(r"^  \+?(\S+): (.+?)  \[", block, re.M))
        skipped = {k for k in expected["space"] if k.rsplit(".", 1)[-1] in expected["except"][name]}
        assert set(searched) == set(expected["space"]) - skipped, (name, searched)
        for key, spec in expected["space"].items():
            if key in searched and isinstance(spec, list):
                assert searched[key] == f"choice({', '.join(map(str, spec))})"
            elif key in searched:
                low, high = float(spec["min"]), float(spec["max"])
                assert re.fullmatch(rf"(tag\(log, )?interval\({low!r}, {high!r}\)\)?", searched[key]), searched[key]
                assert searched[key].startswith("tag(log") == bool(spec.get("log"))
    if dry.returncode != 0:
        assert "bench: error: " in dry.stderr and "Traceback" not in dry.stderr, dry.stderr[-3000:]


def test_known_defects_are_reported_not_copied(tmp_path):
    result = convert("geobench_v1_prithvi.yaml", tmp_path / "conf")
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    text = "\n".join(notes)
    assert "metric val/Multiclass_Jaccard_Index renamed val/mIoU" in text
    assert "metric val/Overall_Accuracy renamed val/Accuracy_Micro" in text
    assert re.search(r"tasks\[\d+\] \(forestnet\): num_classes=17 is wrong: the dataset has 12 classes", text)
    assert "/dccstor/" in text and "a path on the authors' cluster" in text  # the checkpoint overlay
    assert "PrithviModelFactory" in text
    forestnet = yaml.safe_load((tmp_path / "conf" / "task" / "geobench_v1_prithvi_forestnet.yaml").read_text())
    assert "num_classes" not in forestnet and forestnet["metric"] == "val/Accuracy_Micro"
    written = "".join(p.read_text() for p in (tmp_path / "conf").rglob("*.yaml"))
    assert (
        "/dccstor/" not in written and "Overall_Accuracy" not in written and "Multiclass_Jaccard_Index" not in written
    )


def test_an_existing_different_file_is_never_overwritten(tmp_path):
    out = tmp_path / "conf"
    assert convert("quick_test.yaml", out).returncode == 0
    mine = out / "search_space" / "quick_test.yaml"
    mine.write_text("# my own edits\n")
    again = convert("quick_test.yaml", out)
    assert again.returncode != 0 and "exist with other contents; nothing was written" in again.stderr
    assert mine.read_text() == "# my own edits\n"
    assert convert("quick_test.yaml", out, "--force").returncode == 0 and mine.read_text() != "# my own edits\n"


def test_a_config_that_is_not_iterates_gets_a_sentence(tmp_path):
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("n_trials: 3\n")
    result = python_m("bench.convert", str(bogus))
    assert result.returncode != 0 and "has no `tasks:` list" in result.stderr and "Traceback" not in result.stderr


# ---- the converter in-process, writing into a copy of conf/ (its default --out) --------------------
def converted(config: Path, conf: Path, capsys) -> tuple[list[str], str]:
    """Convert with conf as bench's config dir and no --out; (notes, the command it ends with)."""
    main([str(config)], config_dir=conf)
    lines = capsys.readouterr().out.strip().splitlines()
    return [line[len("note: ") :] for line in lines if line.startswith("note: ")], lines[-1]


@pytest.fixture
def conf(tmp_path) -> Path:
    """A copy of bench's conf/: the default --out, without writing into the repository."""
    copy = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


def compose_in(conf: Path, *overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(
            "config",
            overrides=[f"output_dir={conf.parent / 'job'}", f"data_dir={conf.parent / 'data'}", *overrides],
            return_hydra_config=hydra,
        )


def task_file(conf: Path, option: str) -> dict:
    return yaml.safe_load((conf / "task" / f"{option}.yaml").read_text())


TINY = """
experiment_name: tiny
bayesian_search: false
n_trials: 4
run_repetitions: 3
defaults:
  trainer_args: {max_epochs: 9, precision: bf16-mixed}
  terratorch_task:
    model_args: {backbone: resnet50, pretrained: false}
    optimizer: AdamW
    lr: 3.0e-4
    loss: focal
    freeze_backbone: true
tasks:
  - name: eurosat
    type: classification
    direction: max
    metric: val/Overall_Accuracy
    early_stop_patience: 7
    terratorch_task:
      loss: ce
      model_args: {in_channels: 3, num_classes: 10}
    datamodule:
      class_path: terratorch.datamodules.MEuroSATNonGeoDataModule
      init_args: {partition: 0.20x_train, bands: [RED, GREEN, BLUE], num_workers: 2}
  - name: chesapeake
    type: segmentation
    direction: max
    metric: val/Multiclass_Jaccard_Index
    early_stop_patience: 4
    terratorch_task:
      model_args: {decoder: UperNetDecoder, decoder_channels: 64, decoder_scale_modules: true}
    datamodule:
      class_path: terratorch.datamodules.MChesapeakeLandcoverNonGeoDataModule
      init_args: {partition: 0.05x_train, bands: [RED, GREEN, BLUE, NIR]}
optimization_space:
  lr: {min: 1.0e-5, max: 1.0e-3, type: real, log: true}
"""


def test_budget_keys_reach_the_composed_config_and_the_default_out_is_conf(conf, tmp_path, capsys):
    source = tmp_path / "tiny.yaml"
    source.write_text(TINY)
    notes, command = converted(source, conf, capsys)
    # No --out: the files go into bench's config dir (here its copy), and the command needs no --config-dir.
    assert command == "python -m bench -m experiment=tiny"
    assert {p.relative_to(conf).as_posix() for p in conf.rglob("tiny*.yaml")} == {
        "experiment/tiny.yaml",
        "model/tiny.yaml",
        "search_space/tiny.yaml",
        "task/tiny_eurosat.yaml",
        "task/tiny_chesapeake.yaml",
    }
    assert not list(CONFIG_DIR.rglob("tiny*.yaml"))

    cfg = compose_in(conf, "experiment=tiny", "task=tiny_eurosat", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert (sweeper.n_trials, sweeper.repeats) == (4, 3)  # n_trials, run_repetitions
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"  # bayesian_search: false
    assert sweeper.pruner is None  # no task asks for early_prune: the sweeper's NopPruner
    assert list(sweeper.cells.task) == ["tiny_eurosat", "tiny_chesapeake"]
    assert (cfg.task.patience, cfg.task.max_epochs, cfg.task.partition) == (7, 9, "0.20x_train")
    assert list(cfg.task.bands) == ["RED", "GREEN", "BLUE"] and cfg.task.metric == "val/Accuracy_Micro"
    assert cfg.trainer.precision == "bf16-mixed" and cfg.hparams.lr == 3.0e-4 and cfg.hparams.optimizer == "AdamW"
    eurosat = build_spec(cfg).task_kwargs
    # The task's own loss beats the defaults' (iterate's recursive merge); freeze_backbone comes from the defaults.
    assert (eurosat["loss"], eurosat["freeze_backbone"]) == ("ce", True)
    assert "in_channels" not in eurosat["model_args"] and eurosat["model_args"]["backbone_in_chans"] == 3
    assert any("in_channels=3" in n and "bench derives" in n for n in notes)

    cfg = compose_in(conf, "experiment=tiny", "task=tiny_chesapeake")
    assert (cfg.task.patience, cfg.task.max_epochs, cfg.task.partition) == (4, 9, "0.05x_train")
    chesapeake = build_spec(cfg).task_kwargs
    assert (chesapeake["loss"], chesapeake["freeze_backbone"]) == ("focal", True)
    # A ResNet already gives the decoder its pyramid: UperNet is kept, its scale modules are not.
    assert (
        chesapeake["model_args"]["decoder"] == "UperNetDecoder" and chesapeake["model_args"]["decoder_channels"] == 64
    )
    assert "decoder_scale_modules" not in chesapeake["model_args"]
    assert any("decoder_scale_modules=True not carried over" in n and "multi-scale" in n for n in notes)


PLANTED = """
n_trials: 1
planted_top: 1
defaults:
  planted_defaults: 1
  trainer_args: {max_epochs: 2, planted_trainer: 1, callbacks: [planted_callback], devices: 4}
  terratorch_task:
    planted_task_default: 1
    model_args: {backbone: resnet50, planted_model_default: 1}
tasks:
  - name: eurosat
    type: classification
    direction: max
    metric: val/Accuracy_Micro
    planted_task: 1
    terratorch_task:
      planted_terratorch_task: 1
      lr: 0.5
      model_args: {planted_model_arg: 1, in_chans: 3, model: planted_smp_arch}
    datamodule:
      class_path: terratorch.datamodules.MEuroSATNonGeoDataModule
      planted_datamodule: 1
      init_args: {partition: default}
"""


def test_every_key_it_cannot_carry_is_named(conf, tmp_path, capsys):
    source = tmp_path / "unknown_keys.yaml"
    source.write_text(PLANTED)
    notes, _ = converted(source, conf, capsys)
    text = "\n".join(notes)
    for named in (
        "planted_top=1",
        "defaults.planted_defaults=1",
        "defaults.trainer_args.planted_trainer=1",
        "defaults.trainer_args.callbacks=['planted_callback']",
        "defaults.trainer_args.devices=4",
        "defaults.terratorch_task.planted_task_default=1",
        "defaults.terratorch_task.model_args.planted_model_default=1",
        "planted_task=1",
        "terratorch_task.planted_terratorch_task=1",
        "terratorch_task.lr=0.5",
        "model_args.planted_model_arg=1",
        "in_chans=3",
        "model_args.model='planted_smp_arch'",
        "datamodule planted_datamodule=1",
    ):
        assert named in text, (named, text)
    written = "".join(p.read_text() for p in conf.rglob("unknown_keys*.yaml"))
    assert "planted" not in written and "in_chans" not in written
    assert "0.5" not in written and "devices" not in written


@pytest.mark.parametrize(
    "config", ["geobench_v1_prithvi.yaml", "geobench_v1_dofa_large_patch16_224_upernetdecoder_true.yaml"]
)
def test_upernet_keeps_the_catalog_pyramid_without_its_scale_modules(conf, capsys, config):
    notes, _ = converted(ITERATE / config, conf, capsys)
    stem = Path(config).stem
    chesapeake = task_file(conf, f"{stem}_chesapeake")
    # iterate's decoder and width stay; its scale modules (and DOFA's token-reshape-only neck) do not:
    # the catalog neck ends in LearnedInterpolateToPyramidal, which makes the same pyramid.
    assert chesapeake["model_args"] == {"decoder": "UperNetDecoder", "decoder_channels": 128}
    assert re.search(
        r"tasks\[0\] \(chesapeake\) model_args\.decoder_scale_modules=True not carried over: the cell's "
        r"neck already makes the 1/4\.\.1/32 pyramid \(LearnedInterpolateToPyramidal",
        "\n".join(notes),
    )
    if "dofa" in config:
        assert any(n.startswith("tasks[0] (chesapeake) model_args.necks=") for n in notes)


def test_only_arguments_the_catalog_factory_takes_are_written(conf, capsys):
    prefixes, own = ("backbone_", "decoder_", "head_"), {"decoder", "necks", "num_outputs", "rescale"}
    for config in CONFIGS:
        converted(ITERATE / config, conf, capsys)
    for path in (conf / "task").glob("*.yaml"):
        for key in yaml.safe_load(path.read_text()).get("model_args") or {}:
            assert key in own or key.startswith(prefixes), (path.name, key)
    # An SMP decoder that the catalog head's UNetDecoder arguments would be given is not carried.
    assert "model_args" not in task_file(conf, "quick_test_neontree")
    resnet = yaml.safe_load((conf / "task" / "geobench_v1_resnet_eurosat.yaml").read_text())
    assert "model_args" not in resnet  # TimmModelFactory's in_channels: 3


def test_converted_cells_build_on_cpu(conf, capsys):
    """One classification cell (a ResNet-50 whose iterate task said in_channels) and one
    segmentation cell (UperNet on Prithvi's pyramid neck) build through bench's spec and run."""
    import torch
    from hydra.utils import get_class

    for config in ("geobench_v1_resnet.yaml", "geobench_v1_prithvi.yaml"):
        converted(ITERATE / config, conf, capsys)
    for stem, task, expected in (
        ("geobench_v1_resnet", "eurosat", (2, 10)),
        ("geobench_v1_prithvi", "chesapeake", (2, 7, 64, 64)),
    ):
        cfg = compose_in(
            conf,
            f"experiment={stem}",
            f"task={stem}_{task}",
            "model.model_args.backbone_pretrained=false",
            "task.image_size=64",
        )
        spec = build_spec(cfg)
        model = get_class(spec.task_class)(**spec.task_kwargs).model
        with torch.no_grad():
            assert tuple(model(torch.randn(2, len(cfg.task.bands), 64, 64)).output.shape) == expected
        if task == "chesapeake":
            assert type(model.decoder).__name__ == "UperNetDecoder" and not model.decoder.scale_modules
            assert "LearnedInterpolateToPyramidal" in [type(n).__name__ for n in model.neck]
