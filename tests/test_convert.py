"""bench.convert on terratorch-iterate's own benchmark configs (tests/data/iterate, unmodified):
the converted preset's dry run has iterate's tasks, search space and trial budget, its cells are the
catalog's tasks (task=chesapeake, comparable with any other sweep), the files land in a config
folder of the user's (never in bench's package), and the converter names each known defect
instead of copying it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module

from bench.convert import catalog
from bench.convert.cli import main
from bench.paths import CONFIG_DIR, PACKAGE_DIR
from bench.spec import build_spec
from tests.warm_cli import python_m

pytestmark = pytest.mark.duration(90)

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
    known = catalog.tasks_by_datamodule()
    return {
        "tasks": [t["name"] for t in raw["tasks"]],
        # The catalog task of each iterate task's datamodule: its cell's name.
        "cells": [known[t["datamodule"]["class_path"].rsplit(".", 1)[-1]].option for t in raw["tasks"]],
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
    cells = re.findall(r"^cell (\S+): (\w+) (\S+)$", plan, re.M)
    # Each cell is the catalog's task, named as any other sweep of it names it (task=chesapeake).
    assert [dict(kv.split("=", 1) for kv in c[0].split(","))["task"] for c in cells] == expected["cells"]
    preset = yaml.safe_load((tmp_path / "conf" / "experiment" / f"{stem}.yaml").read_text())
    assert preset["hydra"]["sweeper"]["cells"] == {"task": expected["cells"]}
    assert not (tmp_path / "conf" / "task").exists()  # no task of its own: every dataset is the catalog's
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
    forestnet = yaml.safe_load(
        (tmp_path / "conf" / "experiment_task" / "geobench_v1_prithvi" / "forestnet.yaml").read_text()
    )
    # The catalog's forestnet already has the metric (and its 12 classes): neither is restated.
    assert "num_classes" not in forestnet["task"] and "metric" not in forestnet["task"]
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


# ---- the converter in-process, writing into a config folder of the user's ---------------------------
def converted(config: Path, out: Path, capsys) -> tuple[list[str], str]:
    """Convert into `out`; (notes, the command it ends with)."""
    main([str(config), "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    return [line[len("note: ") :] for line in lines if line.startswith("note: ")], lines[-1]


@pytest.fixture
def conf(tmp_path) -> Path:
    """The user's config folder the converter writes into (bench's own package is only read)."""
    return tmp_path / "bench_conf"


def on_search_path(conf: Path) -> list[str]:
    """The user's folder on Hydra's search path after bench's own, as `--config-dir <conf>` puts it."""
    return [
        f"hydra.searchpath=[file://{conf}]",
        f"output_dir={conf.parent / 'job'}",
        f"data_dir={conf.parent / 'data'}",
    ]


def compose_in(conf: Path, *overrides: str, hydra: bool = False):
    """bench's config (pkg://bench.conf) with the user's folder, as `python -m bench --config-dir <conf>` composes it."""
    with initialize_config_module("bench.conf", version_base="1.3"):
        return compose("config", overrides=[*on_search_path(conf), *overrides], return_hydra_config=hydra)


def task_file(conf: Path, stem: str, option: str) -> dict:
    """What the converted experiment `stem` changes in the catalog task `option`, experiment-wide and its own."""
    preset = yaml.safe_load((conf / "experiment" / f"{stem}.yaml").read_text()).get("task") or {}
    own = conf / "experiment_task" / stem / f"{option}.yaml"
    return {**preset, **(yaml.safe_load(own.read_text())["task"] if own.exists() else {})}


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


def test_budget_keys_reach_the_composed_config_and_the_default_out_is_the_users_folder(tmp_path, monkeypatch, capsys):
    source = tmp_path / "tiny.yaml"
    source.write_text(TINY)
    monkeypatch.chdir(tmp_path)
    main([str(source)])
    lines = capsys.readouterr().out.strip().splitlines()
    notes = [line[len("note: ") :] for line in lines if line.startswith("note: ")]
    conf = tmp_path / "bench_conf"
    # No --out: ./bench_conf, read by bench with --config-dir; bench's own package is never written.
    assert lines[-1] == f"python -m bench --config-dir {conf} -m experiment=tiny"
    assert {p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")} == {
        "experiment/tiny.yaml",
        "model/tiny.yaml",  # iterate's pretrained: false differs from the catalog's resnet50
        "search_space/tiny.yaml",
        # What each task changes in the catalog's eurosat and chesapeake, which stay the cells.
        "experiment_task/tiny/eurosat.yaml",
        "experiment_task/tiny/chesapeake.yaml",
    }
    assert not list(PACKAGE_DIR.rglob("tiny*.yaml"))

    cfg = compose_in(conf, "experiment=tiny", "task=eurosat", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert (sweeper.n_trials, sweeper.repeats) == (4, 3)  # n_trials, run_repetitions
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"  # bayesian_search: false
    assert sweeper.pruner is None  # no task asks for early_prune: the sweeper's NopPruner
    assert list(sweeper.cells.task) == ["eurosat", "chesapeake"]
    assert cfg.hydra.runtime.choices.task == "eurosat" and cfg.task.name == "eurosat"
    assert (cfg.task.patience, cfg.task.max_epochs, cfg.task.partition) == (7, 9, "0.20x_train")
    assert list(cfg.task.bands) == ["RED", "GREEN", "BLUE"] and cfg.task.metric == "val/Accuracy_Micro"
    assert cfg.trainer.precision == "bf16-mixed" and cfg.hparams.lr == 3.0e-4 and cfg.hparams.optimizer == "AdamW"
    assert cfg.model.model_args.backbone_pretrained is False
    eurosat = build_spec(cfg).task_kwargs
    # The task's own loss beats the defaults' (iterate's recursive merge); freeze_backbone comes from the defaults.
    assert (eurosat["loss"], eurosat["freeze_backbone"]) == ("ce", True)
    assert "in_channels" not in eurosat["model_args"] and eurosat["model_args"]["backbone_in_chans"] == 3
    assert any("in_channels=3" in n and "bench derives" in n for n in notes)

    cfg = compose_in(conf, "experiment=tiny", "task=chesapeake")
    assert (cfg.task.patience, cfg.task.max_epochs, cfg.task.partition) == (4, 9, "0.05x_train")
    chesapeake = build_spec(cfg).task_kwargs
    assert (chesapeake["loss"], chesapeake["freeze_backbone"]) == ("focal", True)
    # A ResNet already gives the decoder its pyramid: UperNet is kept, its scale modules are not.
    assert (
        chesapeake["model_args"]["decoder"] == "UperNetDecoder" and chesapeake["model_args"]["decoder_channels"] == 64
    )
    assert "decoder_scale_modules" not in chesapeake["model_args"]
    assert any("decoder_scale_modules=True not carried over" in n and "multi-scale" in n for n in notes)
    # Outside the experiment the catalog's chesapeake is as it was.
    plain = compose_in(conf, "task=chesapeake")
    assert (plain.task.partition, list(plain.task.bands)) == ("default", ["BLUE", "GREEN", "NIR", "RED"])


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
    chesapeake = task_file(conf, stem, "chesapeake")
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
    for path in [*conf.glob("experiment/*.yaml"), *conf.glob("experiment_task/*/*.yaml")]:
        for key in (yaml.safe_load(path.read_text()).get("task") or {}).get("model_args") or {}:
            assert key in own or key.startswith(prefixes), (path.name, key)
    # An SMP decoder that the catalog head's UNetDecoder arguments would be given is not carried.
    assert "model_args" not in task_file(conf, "quick_test", "neontree")
    assert "model_args" not in task_file(conf, "geobench_v1_resnet", "eurosat")  # TimmModelFactory's in_channels: 3


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
            f"task={task}",
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


@pytest.mark.parametrize("config", ["geobench_v1_prithvi.yaml", "geobench_v1_resnet.yaml"])
def test_a_converted_geobench_v1_runs_the_catalog_tasks_as_iterate_configures_them(conf, capsys, config):
    """Each iterate task is its catalog task (the cell task=chesapeake, as in any other sweep of it),
    and the experiment composes it as the iterate file describes: partition, patience, metric,
    bands, epochs, precision; with nothing of it outside the experiment."""
    from bench.convert.iterate import new_metric

    notes, _ = converted(ITERATE / config, conf, capsys)
    raw = yaml.safe_load((ITERATE / config).read_text())
    stem = Path(config).stem
    expected = iterate_plan(config)["cells"]
    assert expected[:3] == ["chesapeake", "cashew", "neontree"] and "eurosat" in expected
    assert not (conf / "task").exists() and not (conf / "model").exists()  # the catalog's tasks and model
    with initialize_config_module("bench.conf", version_base="1.3"):  # one search path for every task
        composed = [
            compose("config", [*on_search_path(conf), f"experiment={stem}", f"task={option}"], return_hydra_config=True)
            for option in expected
        ]
    known = catalog.tasks_by_datamodule()
    for task, option, cfg in zip(raw["tasks"], expected, composed):
        assert cfg.hydra.runtime.choices.task == option and cfg.task.name == option
        init = task["datamodule"]["init_args"]
        offered = known[task["datamodule"]["class_path"].rsplit(".", 1)[-1]].offered
        assert cfg.task.partition == init["partition"] and cfg.task.patience == task["early_stop_patience"]
        assert cfg.task.metric == new_metric(task["metric"]) and cfg.task.direction == "maximize"
        assert list(cfg.task.bands) == [b for b in init["bands"] if b in offered], option
        assert cfg.task.max_epochs == raw["defaults"]["trainer_args"]["max_epochs"]
        assert cfg.trainer.precision == raw["defaults"]["trainer_args"]["precision"]
        assert list(cfg.hydra.sweeper.cells.task) == expected
    backbone = raw["defaults"]["terratorch_task"]["model_args"]["backbone"]
    assert cfg.model.model_args.backbone in (backbone, f"timm_{backbone}")
    # Each task file states only what differs from the catalog's (no metric, direction or class count
    # the catalog task already has), and what every task shares is in the experiment, once.
    preset = yaml.safe_load((conf / "experiment" / f"{stem}.yaml").read_text())
    assert preset["task"]["partition"] == "0.10x_train" and preset["task"]["patience"] == 50
    for path in (conf / "experiment_task" / stem).glob("*.yaml"):
        assert not {"metric", "direction", "num_classes", "partition", "patience", "name"} & set(
            yaml.safe_load(path.read_text())["task"]
        ), path.name
    # Outside the experiment, the catalog's tasks are as they were.
    assert compose_in(conf, "task=chesapeake").task.partition == "default"


def test_a_second_task_on_one_dataset_gets_a_task_of_its_own(conf, tmp_path, capsys):
    source = tmp_path / "twice.yaml"
    source.write_text(
        TINY.replace(
            "  - name: chesapeake",
            "  - name: eurosat_small\n"
            "    type: classification\n    datamodule:\n      class_path: terratorch.datamodules.MEuroSATNonGeoDataModule\n"
            "      init_args: {partition: 0.01x_train}\n  - name: chesapeake",
        )
    )
    notes, _ = converted(source, conf, capsys)
    assert any("a second task on the dataset of eurosat" in n for n in notes)
    assert yaml.safe_load((conf / "experiment" / "twice.yaml").read_text())["hydra"]["sweeper"]["cells"]["task"] == [
        "eurosat",
        "twice_eurosat_small",
        "chesapeake",
    ]
    cfg = compose_in(conf, "experiment=twice", "task=twice_eurosat_small")
    assert (cfg.task.name, cfg.task.partition, cfg.task.num_classes) == ("eurosat_small", "0.01x_train", 10)
    assert compose_in(conf, "experiment=twice", "task=eurosat").task.partition == "0.20x_train"


@pytest.mark.parametrize("into", ["package", "checkout_conf"])
def test_it_never_writes_into_benchs_package(tmp_path, into, capsys):
    out = CONFIG_DIR / "task" if into == "package" else CONFIG_DIR.parents[2] / "conf"
    if into == "checkout_conf" and not out.exists():
        pytest.skip("not a checkout: no conf/ symlink")
    before = sorted(PACKAGE_DIR.rglob("*.yaml"))
    with pytest.raises(SystemExit) as stopped:
        main([str(ITERATE / "quick_test.yaml"), "--out", str(out)])
    assert "is inside bench's package" in str(stopped.value.code) and "--config-dir" in str(stopped.value.code)
    assert sorted(PACKAGE_DIR.rglob("*.yaml")) == before
