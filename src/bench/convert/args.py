"""Which of iterate's model_args, terratorch_task and trainer_args keys a bench cell can take.

iterate hands them to TerraTorch as written. bench builds every cell with the catalog model's
factory, its neck and decoder for the task's type, and its own Trainer callbacks, so a key is
carried only where that build accepts it; every other key is named in the notes with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.convert.catalog import FACTORY, CatalogModel

# EncoderDecoderFactory.build_model's own arguments (terratorch 1.2.11). Any other key needs a
# backbone_/decoder_/head_ prefix, or its _check_all_args_used raises "arguments ... were passed but
# not used", and every trial of the cell fails.
FACTORY_ARGS = {
    "backbone",
    "decoder",
    "backbone_kwargs",
    "decoder_kwargs",
    "head_kwargs",
    "num_classes",
    "num_outputs",
    "necks",
    "rescale",
    "image_size_out",
    "peft_config",
}
FACTORY_PREFIXES = ("backbone_", "decoder_", "head_")
# Input bands, channels, classes and time steps: bench derives them for each cell from task.bands, the
# dataset's classes and task.num_frames (each catalog model passes them its own way), with or
# without the backbone_ prefix. The catalog model's own ${task.*} arguments are derived too.
DERIVED = {"bands", "model_bands", "in_channels", "in_chans", "num_classes", "num_frames"}
# The decoders that take a multi-scale feature list: a catalog head that ends in one of them is fed a
# pyramid already (by a *ToPyramidal neck, or by a hierarchical backbone such as a ResNet or Swin).
PYRAMID_DECODERS = {"UNetDecoder", "UperNetDecoder"}

# TerraTorch 1.2.11's task arguments besides model_args/model_factory/model (their __init__s).
_COMMON = {
    "loss",
    "aux_heads",
    "aux_loss",
    "ignore_index",
    "scheduler",
    "scheduler_hparams",
    "freeze_backbone",
    "freeze_decoder",
    "freeze_head",
    "plot_on_val",
    "test_dataloaders_names",
    "lr_overrides",
    "path_to_record_metrics",
}
_TILED = {"tiled_inference_parameters", "tiled_inference_on_testing", "tiled_inference_on_validation"}
_CLASSIFICATION = _COMMON | {"class_weights", "class_names", "custom_loss", "custom_loss_kwargs"}
TASK_ARGS = {
    "segmentation": _COMMON | _TILED | {"class_weights", "class_names", "output_on_inference", "output_most_probable"},
    "classification": _CLASSIFICATION,
    "multilabel_classification": _CLASSIFICATION,
    "regression": _COMMON | _TILED | {"var_weights", "custom_loss", "custom_loss_kwargs"},
}
ANY_TASK_ARG = set().union(*TASK_ARGS.values())
# Task arguments bench keeps under `hparams`, the strongest layer (the search space tunes them there).
HPARAMS = {"lr", "optimizer", "optimizer_hparams"}

# Trainer arguments bench.train passes itself (a second value is a TypeError) or relies on (its
# checkpoint and early-stopping callbacks), and those the launcher decides (a model's resources).
BENCH_TRAINER = {"callbacks", "logger", "default_root_dir", "plugins", "enable_checkpointing"}
DEVICE_TRAINER = {"accelerator", "devices", "num_nodes", "strategy"}
# The rest of Lightning 2.6's Trainer arguments (max_epochs is task.max_epochs).
TRAINER_ARGS = {
    "precision",
    "fast_dev_run",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "log_every_n_steps",
    "enable_progress_bar",
    "enable_model_summary",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "deterministic",
    "benchmark",
    "inference_mode",
    "use_distributed_sampler",
    "profiler",
    "detect_anomaly",
    "barebones",
    "sync_batchnorm",
    "reload_dataloaders_every_n_epochs",
    "enable_autolog_hparams",
    "model_registry",
}


def _names(necks: Sequence[object]) -> list[str]:
    return [str(n.get("name")) for n in necks if isinstance(n, dict)]


def _kv(items: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in items.items())


def model_args(
    args: dict[str, Any], where: str, factory: str | None, model: CatalogModel, notes: list[str]
) -> dict[str, Any]:
    """iterate's model_args (the defaults' or a task's, at `where`) -> those the catalog model's
    factory takes. `factory` is the one iterate named, to say whose argument a refused key is."""
    kept: dict[str, Any] = {}
    derived: dict[str, Any] = {}
    for key, value in args.items():
        if key in DERIVED or key.removeprefix("backbone_") in DERIVED or key in model.derived():
            derived[key] = value
        elif key == "backbone":
            notes.append(
                f"{where}.backbone={value!r} not carried over: the converted model builds "
                f"{model.model_args.get('backbone')} ({model.option}) for every task."
            )
        elif key == "pretrained":  # PrithviModelFactory's and SMPModelFactory's name for it
            kept["backbone_pretrained"] = bool(value)
        elif key == "backbone_pretrained_cfg_overlay" or (isinstance(value, str) and value.startswith("/")):
            notes.append(
                f"{where}.{key}={value!r} not carried over: a path on the authors' cluster. Point the "
                "model's local weights key at your own copy, or let the hub serve them."
            )
        elif key == "backbone_out_indices" and value != model.model_args.get(key):
            # The catalog's necks index into what the backbone returns (SelectIndices): other layers break them.
            whose = f": {factory}'s argument" if factory and factory != FACTORY else ""
            notes.append(
                f"{where}.backbone_out_indices={value} not carried over{whose}; the catalog model "
                f"{model.option}'s neck selects the layers for each task type."
            )
        elif model.factory != FACTORY or key in FACTORY_ARGS or key.startswith(FACTORY_PREFIXES):
            kept[key] = value  # (another factory's arguments are not known here: left to it)
        else:
            whose = f" (it is {factory}'s)" if factory and factory != FACTORY else ""
            notes.append(
                f"{where}.{key}={value!r} not carried over: not an argument of {FACTORY}{whose}, which builds "
                f'{model.option}; TerraTorch would refuse it ("arguments ... were passed but not used").'
            )
    if derived:
        notes.append(
            f"{where}: {_kv(derived)} not carried over: bench derives the input bands, channels, classes and "
            f"time steps of each cell from the task ({model.option} sets {', '.join(model.derived())})."
        )
    return kept


def head_args(
    args: dict[str, Any], where: str, task_type: str, model: CatalogModel, notes: list[str]
) -> dict[str, Any]:
    """A task's neck, decoder and head keys, on top of the catalog model's head for its type. A task
    file can override a head key but never unset one, so the result must build with what stays."""
    head = model.heads.get(task_type) or {}
    args = dict(args)
    decoder = args.get("decoder")
    if decoder is not None and decoder != head.get("decoder"):
        left = sorted(k for k in head if k.startswith("decoder_") and k not in args)
        if left:
            dropped = {k: args.pop(k) for k in list(args) if k == "decoder" or k.startswith("decoder_")}
            notes.append(
                f"{where}: {_kv(dropped)} not carried over: {model.option}'s {task_type} head gives its "
                f"{head['decoder']} {', '.join(left)}, meant for that decoder, which a task file cannot unset; the "
                f"cell keeps {head['decoder']}."
            )
    necks = head.get("necks") or []
    if "necks" in args and necks and args["necks"] != necks:
        notes.append(
            f"{where}.necks={args.pop('necks')} not carried over: {model.option}'s {task_type} neck "
            f"({', '.join(_names(necks))}) is used; it selects and shapes the features its decoder takes."
        )
    if args.get("decoder_scale_modules"):
        decoder = args.get("decoder", head.get("decoder"))
        own = args.get("necks", necks) == necks  # the catalog's neck, which feeds its decoder what it needs
        pyramid = [n for n in _names(args.get("necks", necks)) if n.endswith("ToPyramidal")]
        if pyramid:
            why = (
                f"the cell's neck already makes the 1/4..1/32 pyramid ({pyramid[-1]}: the same layers as "
                "UperNetDecoder's deprecated scale modules), so both would rescale the features twice"
            )
        elif own and head.get("decoder") in PYRAMID_DECODERS:
            why = (
                f"{model.option}'s backbone already gives multi-scale features (its {task_type} head feeds them to "
                f"{head['decoder']}): scale modules would rescale them again"
            )
        else:
            why = ""
        if why:
            args.pop("decoder_scale_modules")
            notes.append(f"{where}.decoder_scale_modules=True not carried over: {why}. The cell keeps {decoder} on it.")
    return args


def task_args(args: dict[str, Any], where: str, task_type: str, notes: list[str]) -> dict[str, Any]:
    """A task's terratorch_task keys besides model_args/model_factory/model -> its task_args."""
    kept = {}
    for key, value in args.items():
        if key in HPARAMS:
            notes.append(
                f"{where}.{key}={value!r} not carried over: bench sets it for every cell under `hparams` (the "
                "experiment and the search space), which outrank a task's arguments."
            )
        elif key in TASK_ARGS.get(task_type, ANY_TASK_ARG):
            kept[key] = value
        else:
            notes.append(f"{where}.{key}={value!r} not carried over: not an argument of TerraTorch's {task_type} task.")
    return kept


def trainer_args(args: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """defaults.trainer_args without max_epochs (task.max_epochs) -> the experiment's trainer block."""
    kept = {}
    for key, value in args.items():
        if key in TRAINER_ARGS:
            kept[key] = value
            continue
        if key in DEVICE_TRAINER:
            why = "bench's launcher gives each trial its devices (a model's resources.gpus_per_trial)"
        elif key in BENCH_TRAINER:
            why = "bench's training sets it (its checkpoints, early stopping and loggers)"
        else:
            why = "not an argument of Lightning's Trainer"
        notes.append(f"defaults.trainer_args.{key}={value!r} not carried over: {why}.")
    return kept
