"""A terratorch-iterate benchmark config -> bench's task, model, search_space and experiment files.

iterate's keys and where they go:
  defaults.terratorch_task.model_args.backbone -> model/<stem>.yaml on the catalog model of that backbone
      (with the defaults' backbone_* arguments its factory takes; decoder/neck/head ones go to each task)
  defaults.terratorch_task lr/optimizer/optimizer_hparams -> hparams.* (experiment)
  defaults.terratorch_task's other task arguments (loss, freeze_backbone, ...) -> each task's task_args
  defaults.trainer_args                        -> task.max_epochs, trainer.* (experiment)
  tasks[i]                                     -> the catalog task of its datamodule class, run as
      that task (its cell is named after it: task=chesapeake, as in any other sweep of it), with
      what differs from it in experiment_task/<stem>/<task>.yaml, which conf/config.yaml composes
      over the task for experiment=<stem>: partition and bands (datamodule init_args),
      early_stop_patience, metric (pre-1.0.3 names mapped), direction, terratorch_task arguments
      (task_args) and the model_args the catalog model's factory and head take (bench.convert.args),
      optimization_except. A difference every task shares goes into the experiment's `task:` once.
      A second iterate task on the same dataset gets a task file of its own, task/<stem>_<name>.yaml.
  tasks[i].early_prune, max_run_duration       -> the sweeper's pruner, trainer.max_time (experiment)
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
from typing import Any, cast

from omegaconf import OmegaConf

from bench.convert import args as targs
from bench.convert import catalog
from bench.errors import ConfigError
from bench.paths import CONFIG_DIR

# terratorch 1.0.3 renamed these; 1.2.11 logs only the new names, and iterate's metric assertion fails.
METRIC_RENAMES = {"Overall_Accuracy": "Accuracy_Micro", "Multiclass_Jaccard_Index": "mIoU"}
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
# iterate's Task fields (terratorch_iterate/iterate_types.py).
TASK_KEYS = {
    "name",
    "type",
    "datamodule",
    "direction",
    "terratorch_task",
    "metric",
    "early_prune",
    "early_stop_patience",
    "optimization_except",
    "max_run_duration",
}
# Keys of iterate's own run bookkeeping: bench keeps its sweep dir, journal and MLflow store instead.
RUN_KEYS = {"run_name", "storage_uri", "ray_storage_path", "description"}


@dataclass
class ConvertedTask:
    """One iterate task: the catalog task it runs as, with `body` over it (only its differences), or,
    where `extends` names the catalog task, a task file of its own (`name`) on that one."""

    header: str
    body: dict[str, Any]
    extends: str | None = None
    name: str | None = None


@dataclass
class Conversion:
    stem: str
    files: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # path -> (header, body)
    notes: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    tasks: dict[str, ConvertedTask] = field(default_factory=dict)  # by cell (task option)


@dataclass
class Shared:
    """What the defaults' terratorch_task gives every task, as iterate merges it into each."""

    model: catalog.CatalogModel
    option: str  # the model the cells run: the catalog's, or model/<stem> where iterate changes it
    factory: str | None
    model_args: dict[str, Any]  # decoder, necks, head_*: below each task's own
    task_args: dict[str, Any]


def stem_of(source: Path) -> str:
    return re.sub(r"[^a-z0-9]+", "_", source.stem.lower()).strip("_")


def new_metric(metric: str) -> str:
    stage, _, name = metric.rpartition("/")
    name = METRIC_RENAMES.get(name, name)
    return f"{stage}/{name}" if stage else name


def convert(source: Path, config_dir: Path = CONFIG_DIR) -> Conversion:
    loaded = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("tasks"), list) or not loaded["tasks"]:
        raise ConfigError(f"{source} is not a terratorch-iterate benchmark config: it has no `tasks:` list")
    raw = cast(dict[str, Any], loaded)  # iterate's keys are names
    out = Conversion(stem_of(source))
    defaults = raw.get("defaults") or {}
    for key in sorted(set(defaults) - {"trainer_args", "terratorch_task"}):
        out.notes.append(
            f"defaults.{key}={defaults[key]!r} not carried over: iterate's defaults hold only "
            "trainer_args and terratorch_task."
        )
    space = raw.get("optimization_space") or {}
    search = _search_space(space, catalog.hparam_keys(config_dir), out)
    shared = _model(defaults.get("terratorch_task") or {}, out, config_dir)
    known = catalog.tasks_by_datamodule(config_dir)
    for index, task in enumerate(raw["tasks"]):
        _task(index, task, search, known, shared, out, source, config_dir)
    shared_task = _hoist(out)
    out.files[f"search_space/{out.stem}.yaml"] = (
        f"Converted by bench.convert from {source.name} (terratorch-iterate optimization_space).",
        search,
    )
    out.files[f"experiment/{out.stem}.yaml"] = _experiment(raw, defaults, shared.option, out, source, shared_task)
    _task_files(out)
    for key in sorted(
        set(raw)
        - {
            "defaults",
            "tasks",
            "optimization_space",
            "n_trials",
            "run_repetitions",
            "bayesian_search",
            "experiment_name",
            "save_models",
        }
    ):
        why = (
            "iterate's run bookkeeping; bench keeps its sweep dir, Optuna journal and MLflow store"
            if key in RUN_KEYS
            else "bench has no equivalent"
        )
        out.notes.append(f"{key}={raw[key]!r} not carried over: {why}.")
    return out


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """iterate's recursive_merge: a task's terratorch_task over the defaults', dicts merged key by key."""
    result = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if both else value
    return result


def _domain(spec: object, key: str, out: Conversion) -> str | None:
    if isinstance(spec, list):
        return f"choice({', '.join(_literal(v) for v in spec)})"
    if isinstance(spec, dict) and {"min", "max"} <= set(spec):
        low, high = spec["min"], spec["max"]
        kind = spec.get("type", "real")
        body = (
            f"interval({_literal(float(low))}, {_literal(float(high))})"
            if kind == "real"
            else f"int(interval({int(low)}, {int(high)}))"
        )
        return f"tag(log, {body})" if spec.get("log") else body
    out.notes.append(f"optimization_space.{key}={spec!r} not carried over: neither a list of choices nor min/max.")
    return None


def _literal(value: object) -> str:
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


def _model(task_defaults: dict[str, Any], out: Conversion, config_dir: Path) -> Shared:
    args = dict(task_defaults.get("model_args") or {})
    backbone = args.pop("backbone", None)
    known = catalog.models_by_backbone(config_dir)
    # iterate's configs name timm backbones without TerraTorch's `timm_` registry prefix.
    base = known.get(str(backbone)) or known.get(f"timm_{backbone}")
    if base is None:
        raise ConfigError(
            f"defaults.terratorch_task.model_args.backbone={backbone!r} is not a backbone of bench's "
            f"model catalog (conf/model/); add a model file for it first, then convert again"
        )
    factory = task_defaults.get("model_factory")
    if factory and factory != catalog.FACTORY:
        out.notes.append(
            f"defaults.terratorch_task.model_factory={factory} not carried over: TerraTorch 1.2 builds "
            f"{backbone} with {base.factory}, so the catalog model {base.option} (its necks and decoders) is used."
        )
    kept = targs.model_args(args, "defaults.terratorch_task.model_args", factory, base, out.notes)
    own = {k: v for k, v in kept.items() if k.startswith("backbone_")}
    changed = differences(own, base.model_args)
    option = base.option
    if changed:  # the catalog model with other backbone arguments: a model of its own
        option = out.stem
        out.files[f"model/{option}.yaml"] = (
            f"Converted by bench.convert: {backbone} as iterate's defaults configure it.",
            {"defaults": [f"/model/{base.option}@_here_", "_self_"], "model_args": changed},
        )
    task_args: dict[str, Any] = {}
    for key, value in task_defaults.items():
        if key in ("model_args", "model_factory") or key in targs.HPARAMS:  # the experiment's hparams
            continue
        if key in targs.ANY_TASK_ARG:
            task_args[key] = value
        else:
            out.notes.append(
                f"defaults.terratorch_task.{key}={value!r} not carried over: not an argument of "
                "TerraTorch's tasks"
                + (" (bench builds every cell with the model's factory)." if key == "model" else ".")
            )
    return Shared(base, option, factory, {k: v for k, v in kept.items() if k not in own}, task_args)


def _task(
    index: int,
    task: dict[str, Any],
    search: dict[str, str],
    known: dict[str, catalog.CatalogTask],
    shared: Shared,
    out: Conversion,
    source: Path,
    config_dir: Path,
) -> None:
    name = str(task.get("name") or f"task{index}")
    where = f"tasks[{index}] ({name})"
    datamodule = task.get("datamodule") or {}
    class_path = str(datamodule.get("class_path", ""))
    base = known.get(class_path.rsplit(".", 1)[-1])
    if base is None:
        raise ConfigError(
            f"{where}: datamodule {class_path or '(none)'} is not wrapped by a task of bench's catalog "
            "(conf/task/); add a task file for it first, then convert again"
        )
    for key in sorted(set(task) - TASK_KEYS):
        out.notes.append(f"{where}: {key}={task[key]!r} not carried over: not a field of iterate's tasks.")
    for key in sorted(set(datamodule) - {"class_path", "init_args"}):
        out.notes.append(
            f"{where}: datamodule {key}={datamodule[key]!r} not carried over: bench instantiates the "
            f"catalog task's datamodule from its class and init_args only."
        )
    init = dict(datamodule.get("init_args") or {})
    body: dict[str, Any] = {}
    if task.get("type") and task["type"] != base.type:
        out.notes.append(f"{where}: type {task['type']} differs from the dataset's ({base.type}); kept {base.type}.")
    if "metric" in task:
        body["metric"] = new_metric(str(task["metric"]))
        if body["metric"] != task["metric"]:
            out.notes.append(
                f"{where}: metric {task['metric']} renamed {body['metric']} (terratorch>=1.0.3 logs only the new name)."
            )
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
            out.notes.append(
                f"{where}: datamodule bands {[b for b in bands if b not in base.offered]} are not offered "
                f"by {base.option} (it offers {base.offered}); kept {offered}."
            )
        body["bands"] = offered
    _terratorch_task(dict(task.get("terratorch_task") or {}), where, base, shared, body, out)
    excepted = [
        k.lstrip("+") for k in search for skip in task.get("optimization_except") or [] if k.rsplit(".", 1)[-1] == skip
    ]
    if task.get("optimization_except"):
        body["search_except"] = excepted
    for key in ("data_root", "train_transform", "val_transform", "test_transform", "batch_size"):
        if key in init:
            why = {
                "data_root": "the data comes from the catalog task's dataset root (its env var)",
                "batch_size": "hparams.batch_size sets it (and the search space may tune it)",
            }.get(key, "the catalog task's transforms (flips, Resize to task.image_size, ToTensorV2) are used")
            out.notes.append(f"{where}: datamodule {key} not carried over: {why}.")
            init.pop(key)
    if init:
        body["datamodule"] = init
    if base.option not in out.cells:
        # The catalog's task itself is the cell (named task=<option>, comparable with any other sweep
        # of it); only what differs from it is written, composed over it by conf/config.yaml's
        # experiment_task/<experiment>/<task> for this experiment.
        catalog_task = catalog.plain(catalog.load_option("task", base.option, config_dir))
        out.cells.append(base.option)
        out.tasks[base.option] = ConvertedTask(
            f"@package _global_\n# Converted by bench.convert from {source.name} {where}: what differs from\n"
            f"# the catalog task {base.option}, composed over it for experiment={out.stem} (conf/config.yaml's\n"
            "# experiment_task group).",
            differences(body, catalog_task),
        )
        if name != base.option:
            out.notes.append(
                f"{where}: runs as the catalog task {base.option} (datamodule {class_path.rsplit('.', 1)[-1]}); "
                f"its cell and results are named {base.option}."
            )
        return
    # A second iterate task on the same dataset: a task of its own, the catalog's with its settings.
    option = f"{out.stem}_{re.sub(r'[^a-z0-9]+', '_', name.lower())}"
    out.notes.append(
        f"{where}: a second task on the dataset of {base.option} (tasks[{out.cells.index(base.option)}]); "
        f"it gets a task of its own, {option}."
    )
    out.cells.append(option)
    out.tasks[option] = ConvertedTask(
        f"Converted by bench.convert from {source.name} {where}: a second task on {base.option}'s dataset.",
        body,
        extends=base.option,
        name=name,
    )


def differences(body: dict[str, Any], catalog_task: dict[str, Any]) -> dict[str, Any]:
    """What of `body` changes `catalog_task` once merged over it: mappings merge key by key, so only
    their differing keys are kept; lists and scalars replace, so they are kept whole where unequal."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        theirs = catalog_task.get(key)
        if isinstance(value, dict) and isinstance(theirs, dict):
            inner = differences(value, theirs)
            if inner:
                out[key] = inner
        elif value != theirs:
            out[key] = value
    return out


def _hoist(out: Conversion) -> dict[str, Any]:
    """The differences every task of the benchmark has alike (iterate's GEO-Bench configs give each
    task the same partition and patience), moved to the experiment's `task:`, stated there once."""
    bodies = [task.body for task in out.tasks.values()]
    if len(bodies) < 2:
        return {}
    common = {k: v for k, v in bodies[0].items() if all(k in b and b[k] == v for b in bodies[1:])}
    for body in bodies:
        for key in common:
            del body[key]
    return common


def _task_files(out: Conversion) -> None:
    for option, task in out.tasks.items():
        if task.extends is not None:
            body = {"defaults": [f"/task/{task.extends}@_here_", "_self_"], "name": task.name, **task.body}
            out.files[f"task/{option}.yaml"] = (task.header, body)
        elif task.body:
            out.files[f"experiment_task/{out.stem}/{option}.yaml"] = (task.header, {"task": task.body})


def _terratorch_task(
    terratorch_task: dict[str, Any],
    where: str,
    base: catalog.CatalogTask,
    shared: Shared,
    body: dict[str, Any],
    out: Conversion,
) -> None:
    """The task's terratorch_task (over the defaults', as iterate merges them) -> its model_args and task_args."""
    model_args = dict(terratorch_task.pop("model_args", None) or {})
    classes = model_args.get("num_classes")
    if classes is not None and base.num_classes is not None and classes != base.num_classes:
        out.notes.append(
            f"{where}: num_classes={classes} is wrong: the dataset has {base.num_classes} classes "
            f"(conf/task/{base.option}.yaml); kept {base.num_classes}."
        )
    factory = terratorch_task.pop("model_factory", None)
    for key, value in (("model_factory", factory), ("model", terratorch_task.pop("model", None))):
        if value is not None:
            out.notes.append(
                f"{where}: terratorch_task {key}={value} not carried over: every cell of a bench model "
                "is built by that model's factory, neck and decoder."
            )
    kept = targs.model_args(model_args, f"{where} model_args", factory or shared.factory, shared.model, out.notes)
    kept = targs.head_args(merged(shared.model_args, kept), f"{where} model_args", base.type, shared.model, out.notes)
    if kept:
        body["model_args"] = kept
    task_args = targs.task_args(
        merged(shared.task_args, terratorch_task), f"{where} terratorch_task", base.type, out.notes
    )
    if task_args:
        body["task_args"] = task_args


def _experiment(
    raw: dict[str, Any],
    defaults: dict[str, Any],
    model_option: str,
    out: Conversion,
    source: Path,
    shared_task: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    overrides: list[dict[str, str]] = [{"override /model": model_option}, {"override /search_space": out.stem}]
    if raw.get("bayesian_search") is False:
        overrides.append({"override /hydra/sweeper/sampler": "random"})
    body: dict[str, Any] = {"defaults": overrides}
    task_defaults = defaults.get("terratorch_task") or {}
    hparams = {k: task_defaults[k] for k in ("optimizer", "lr", "optimizer_hparams") if k in task_defaults}
    if hparams:
        body["hparams"] = hparams
    trainer = dict(defaults.get("trainer_args") or {})
    task = dict(shared_task)
    if "max_epochs" in trainer:
        task["max_epochs"] = trainer.pop("max_epochs")
    if task:
        body["task"] = task
    trainer = targs.trainer_args(trainer, out.notes)
    durations = {t.get("max_run_duration") for t in raw["tasks"]}
    if len(durations) == 1 and None not in durations:  # Lightning's max_time takes iterate's DD:HH:MM:SS
        trainer["max_time"] = durations.pop()
    elif len(durations) > 1:
        out.notes.append(
            f"tasks' max_run_duration differ ({sorted(map(str, durations))}) not carried over: bench "
            "passes one trainer.max_time to every cell."
        )
    if trainer:
        body["trainer"] = trainer
    mlflow = {
        k: v
        for k, v in (("experiment", raw.get("experiment_name")), ("save_models", raw.get("save_models")))
        if v is not None
    }
    if mlflow:
        body["mlflow"] = mlflow
    sweeper: dict[str, Any] = {"cells": {"task": list(out.cells)}, "n_trials": int(raw.get("n_trials", 1))}
    if raw.get("run_repetitions"):
        sweeper["repeats"] = int(raw["run_repetitions"])
    pruned = {bool(t.get("early_prune")) for t in raw["tasks"]}
    if pruned == {False}:  # iterate prunes only the tasks that ask for it (early_prune: its pruning callback)
        # null, not `override /hydra/sweeper/pruner: none`: config.yaml's own override of that group wins.
        sweeper["pruner"] = None
    elif pruned == {False, True}:
        out.notes.append("tasks' early_prune differ: bench prunes every cell of a sweep alike; kept its median pruner.")
    body["hydra"] = {"sweeper": sweeper}
    return (
        f"@package _global_\n# Converted by bench.convert from {source.name} (terratorch-iterate): "
        f"{len(out.cells)} task(s) x {model_option}.",
        body,
    )
