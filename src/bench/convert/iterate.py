"""A terratorch-iterate benchmark config -> bench's task, model, search_space and experiment files.

iterate's keys and where they go:
  defaults.terratorch_task.model_args.backbone -> model/<stem>.yaml on the catalog model of that backbone
  defaults.terratorch_task.optimizer           -> hparams.optimizer (experiment)
  defaults.trainer_args                        -> task.max_epochs, trainer.* (experiment)
  tasks[i]                                     -> task/<stem>_<name>.yaml on the catalog task of its
      datamodule class: partition and bands (datamodule init_args), early_stop_patience, metric
      (pre-1.0.3 names mapped), direction, terratorch_task.loss and decoder model_args,
      optimization_except (search keys the cell skips)
  optimization_space                           -> search_space/<stem>.yaml
  n_trials, run_repetitions, bayesian_search   -> hydra.sweeper n_trials, repeats, sampler
  experiment_name, save_models                 -> mlflow.experiment, mlflow.save_models
Every other key, and every value that is a known defect (cluster paths, a wrong class count), is
named in the notes instead of being copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.convert import catalog
from bench.errors import ConfigError
from bench.paths import CONFIG_DIR

# terratorch 1.0.3 renamed these; 1.2.11 logs only the new names, and iterate's metric assertion fails.
METRIC_RENAMES = {"Overall_Accuracy": "Accuracy_Micro", "Multiclass_Jaccard_Index": "mIoU"}
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
# Per-task model_args bench derives itself: the bands from task.bands, the classes from the dataset.
DERIVED_MODEL_ARGS = {"bands", "backbone_bands", "backbone_model_bands", "num_classes"}
# Keys of iterate's own run bookkeeping: bench keeps its sweep dir, journal and MLflow store instead.
RUN_KEYS = {"run_name", "storage_uri", "ray_storage_path", "description"}


@dataclass
class Conversion:
    stem: str
    files: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # path -> (header, body)
    notes: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)


def stem_of(source: Path) -> str:
    return re.sub(r"[^a-z0-9]+", "_", source.stem.lower()).strip("_")


def new_metric(metric: str) -> str:
    stage, _, name = metric.rpartition("/")
    name = METRIC_RENAMES.get(name, name)
    return f"{stage}/{name}" if stage else name


def convert(source: Path, config_dir: Path = CONFIG_DIR) -> Conversion:
    raw = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
        raise ConfigError(f"{source} is not a terratorch-iterate benchmark config: it has no `tasks:` list")
    out = Conversion(stem_of(source))
    defaults = raw.get("defaults") or {}
    space = raw.get("optimization_space") or {}
    search = _search_space(space, catalog.hparam_keys(config_dir), out)
    model_option = _model(defaults.get("terratorch_task") or {}, out, config_dir)
    known = catalog.tasks_by_datamodule(config_dir)
    for index, task in enumerate(raw["tasks"]):
        _task(index, task, search, known, out, source)
    out.files[f"search_space/{out.stem}.yaml"] = (
        f"Converted by bench.convert from {source.name} (terratorch-iterate optimization_space).", search)
    out.files[f"experiment/{out.stem}.yaml"] = _experiment(raw, defaults, model_option, out, source)
    for key in sorted(set(raw) - {"defaults", "tasks", "optimization_space", "n_trials", "run_repetitions",
                                  "bayesian_search", "experiment_name", "save_models"}):
        why = "iterate's run bookkeeping; bench keeps its sweep dir, Optuna journal and MLflow store" if key in RUN_KEYS \
            else "bench has no equivalent"
        out.notes.append(f"{key}={raw[key]!r} not carried over: {why}.")
    return out


def _domain(spec: Any, key: str, out: Conversion) -> str | None:
    if isinstance(spec, list):
        return f"choice({', '.join(_literal(v) for v in spec)})"
    if isinstance(spec, dict) and {"min", "max"} <= set(spec):
        low, high = spec["min"], spec["max"]
        kind = spec.get("type", "real")
        body = f"interval({_literal(float(low))}, {_literal(float(high))})" if kind == "real" \
            else f"int(interval({int(low)}, {int(high)}))"
        return f"tag(log, {body})" if spec.get("log") else body
    out.notes.append(f"optimization_space.{key}={spec!r} not carried over: neither a list of choices nor min/max.")
    return None


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def _search_space(space: dict[str, Any], existing: set[str], out: Conversion) -> dict[str, str]:
    """iterate nests its space like the task arguments (lr, optimizer_hparams.weight_decay,
    model_args.decoder_channels, batch_size); bench's keys are those under `hparams`."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and not {"min", "max"} <= set(value):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(space, "")
    search = {}
    for key, spec in flat.items():
        domain = _domain(spec, key, out)
        if domain is not None:
            target = f"hparams.{key}"
            search[target if target in existing else f"+{target}"] = domain
    return search


def _model(task_defaults: dict[str, Any], out: Conversion, config_dir: Path) -> str:
    args = dict(task_defaults.get("model_args") or {})
    backbone = args.pop("backbone", None)
    known = catalog.models_by_backbone(config_dir)
    # iterate's configs name timm backbones without TerraTorch's `timm_` registry prefix.
    base = known.get(str(backbone)) or known.get(f"timm_{backbone}")
    if base is None:
        raise ConfigError(f"defaults.terratorch_task.model_args.backbone={backbone!r} is not a backbone of bench's "
                          f"model catalog (conf/model/); add a model file for it first, then convert again")
    factory = task_defaults.get("model_factory")
    if factory and factory != "EncoderDecoderFactory":
        out.notes.append(f"defaults.terratorch_task.model_factory={factory} not carried over: TerraTorch 1.2 builds "
                         f"{backbone} with EncoderDecoderFactory, so the catalog model {base} (its necks and decoders) is used.")
    body: dict[str, Any] = {"defaults": [f"/model/{base}@_here_", "_self_"]}
    carried = {}
    for key, value in args.items():
        if key in ("pretrained", "backbone_pretrained"):
            carried["backbone_pretrained"] = bool(value)
        elif key == "backbone_pretrained_cfg_overlay" or (isinstance(value, str) and value.startswith("/")):
            out.notes.append(f"defaults.terratorch_task.model_args.{key}={value!r} not carried over: a path on the "
                             f"authors' cluster. Point the model's local weights key at your own copy, or let the hub serve them.")
        elif key == "backbone_out_indices" and factory != "EncoderDecoderFactory":
            out.notes.append(f"defaults.terratorch_task.model_args.backbone_out_indices={value} not carried over: "
                             f"{factory}'s argument; the catalog model's neck selects the layers for each task type.")
        else:
            carried[key] = value
    if carried:
        body["model_args"] = carried
    out.files[f"model/{out.stem}.yaml"] = (f"Converted by bench.convert: {backbone} as iterate's defaults configure it.", body)
    return out.stem


def _task(index: int, task: dict[str, Any], search: dict[str, str], known: dict[str, Any], out: Conversion,
          source: Path) -> None:
    name = str(task.get("name") or f"task{index}")
    where = f"tasks[{index}] ({name})"
    datamodule = task.get("datamodule") or {}
    class_path = str(datamodule.get("class_path", ""))
    base = known.get(class_path.rsplit(".", 1)[-1])
    if base is None:
        raise ConfigError(f"{where}: datamodule {class_path or '(none)'} is not wrapped by a task of bench's catalog "
                          "(conf/task/); add a task file for it first, then convert again")
    init = dict(datamodule.get("init_args") or {})
    body: dict[str, Any] = {"defaults": [f"/task/{base.option}@_here_", "_self_"], "name": name}
    if task.get("type") and task["type"] != base.type:
        out.notes.append(f"{where}: type {task['type']} differs from the dataset's ({base.type}); kept {base.type}.")
    if "metric" in task:
        body["metric"] = new_metric(str(task["metric"]))
        if body["metric"] != task["metric"]:
            out.notes.append(f"{where}: metric {task['metric']} renamed {body['metric']} (terratorch>=1.0.3 logs only the new name).")
    if "direction" in task:
        body["direction"] = DIRECTIONS.get(str(task["direction"]), task["direction"])
    if "early_stop_patience" in task:
        body["patience"] = task["early_stop_patience"]
    if "partition" in init:
        body["partition"] = init.pop("partition")
    if "bands" in init:
        bands = [str(b) for b in init.pop("bands")]
        offered = [b for b in bands if b in base.offered]
        if offered != bands:
            out.notes.append(f"{where}: datamodule bands {[b for b in bands if b not in base.offered]} are not offered "
                             f"by {base.option} (it offers {base.offered}); kept {offered}.")
        body["bands"] = offered
    terratorch_task = dict(task.get("terratorch_task") or {})
    model_args = dict(terratorch_task.pop("model_args", None) or {})
    classes = model_args.get("num_classes")
    if classes is not None and base.num_classes is not None and classes != base.num_classes:
        out.notes.append(f"{where}: num_classes={classes} is wrong: the dataset has {base.num_classes} classes "
                         f"(conf/task/{base.option}.yaml); kept {base.num_classes}.")
    for key in sorted(DERIVED_MODEL_ARGS & set(model_args)):
        model_args.pop(key)
    for key in ("model", "model_factory"):
        if key in model_args or key in terratorch_task:
            value = model_args.pop(key, None) or terratorch_task.pop(key, None)
            out.notes.append(f"{where}: terratorch_task {key}={value} not carried over: every cell of a bench model "
                             "is built by that model's factory, neck and decoder.")
    if model_args:
        body["model_args"] = model_args
    if terratorch_task:
        body["task_args"] = terratorch_task
    excepted = [k.lstrip("+") for k in search for skip in task.get("optimization_except") or [] if k.rsplit(".", 1)[-1] == skip]
    if task.get("optimization_except"):
        body["search_except"] = excepted
    for key in ("data_root", "train_transform", "val_transform", "test_transform", "batch_size"):
        if key in init:
            why = {"data_root": "the data comes from the catalog task's dataset root (its env var)",
                   "batch_size": "hparams.batch_size sets it (and the search space may tune it)"}.get(
                key, "the catalog task's transforms (flips, Resize to task.image_size, ToTensorV2) are used")
            out.notes.append(f"{where}: datamodule {key} not carried over: {why}.")
            init.pop(key)
    if init:
        body["datamodule"] = init
    option = f"{out.stem}_{re.sub(r'[^a-z0-9]+', '_', name.lower())}"
    out.files[f"task/{option}.yaml"] = (f"Converted by bench.convert from {source.name} {where}.", body)
    out.cells.append(option)


def _experiment(raw: dict[str, Any], defaults: dict[str, Any], model_option: str, out: Conversion,
                source: Path) -> tuple[str, dict[str, Any]]:
    overrides: list[Any] = [{"override /model": model_option}, {"override /search_space": out.stem}]
    if raw.get("bayesian_search") is False:
        overrides.append({"override /hydra/sweeper/sampler": "random"})
    body: dict[str, Any] = {"defaults": overrides}
    optimizer = (defaults.get("terratorch_task") or {}).get("optimizer")
    if optimizer:
        body["hparams"] = {"optimizer": optimizer}
    trainer = dict(defaults.get("trainer_args") or {})
    if "max_epochs" in trainer:
        body["task"] = {"max_epochs": trainer.pop("max_epochs")}
    if trainer:
        body["trainer"] = trainer
    mlflow = {k: v for k, v in (("experiment", raw.get("experiment_name")), ("save_models", raw.get("save_models")))
              if v is not None}
    if mlflow:
        body["mlflow"] = mlflow
    sweeper: dict[str, Any] = {"cells": {"task": list(out.cells)}, "n_trials": int(raw.get("n_trials", 1))}
    if raw.get("run_repetitions"):
        sweeper["repeats"] = int(raw["run_repetitions"])
    body["hydra"] = {"sweeper": sweeper}
    return (f"@package _global_\n# Converted by bench.convert from {source.name} (terratorch-iterate): "
            f"{len(out.cells)} task(s) x {model_option}.", body)
