"""Whether a task, its metric, a model and the protocol fit together: each mismatch is refused with
a sentence by build_spec, so in the sweep's driver before anything is launched, not in a job.

- A metric TerraTorch logs only for another task type (a regression task given mIoU) would never be
  logged, so the job would fail after its first epoch.
- A time series (task.num_frames > 1) needs a model that takes the frames itself or TerraTorch's
  TemporalWrapper, which only its EncoderDecoderFactory and ObjectDetectionModelFactory apply.
- A frozen encoder (protocol=frozen) needs an encoder TerraTorch can freeze: not one trained through
  PEFT adapters (freeze_encoder() would freeze the adapters inside it too, so nothing of the encoder
  would learn: neither protocol), and not a model file that says its factory has no encoder to freeze
  (`freezable: false`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig

from bench.errors import ConfigError

# What TerraTorch 1.2.11's tasks log, without the stage prefix (the per-class IoU_*, Class_* and the
# losses aside): the task classes' configure_metrics, and torchmetrics' MeanAveragePrecision keys.
_MAP = [
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
]
LOGGED_METRICS: dict[str, set[str]] = {
    "segmentation": {"mIoU", "mIoU_Micro", "F1_Score", "Accuracy", "Pixel_Accuracy", "Boundary_mIoU"},
    "classification": {"Accuracy", "Accuracy_Micro", "F1_Score", "Precision", "Recall"},
    "multilabel_classification": {
        "Multilabel_Accuracy",
        "Multilabel_Accuracy_Micro",
        "Multilabel_F1_Score",
        "Multilabel_Precision",
        "Multilabel_Recall",
        "Multilabel_AUROC",
    },
    "regression": {"RMSE", "MSE", "MAE", "R2_Score"},
    "object_detection": set(_MAP),
    # Mask R-CNN's metric holds both IoU types, each key prefixed with its own.
    "instance_segmentation": {f"{kind}_{name}" for kind in ("bbox", "segm") for name in _MAP},
}
# The model factories that apply TerraTorch's TemporalWrapper (terratorch.models.utils._get_backbone).
WRAPPING_FACTORIES = {"EncoderDecoderFactory", "ObjectDetectionModelFactory"}
# How a single-image backbone takes a multi-temporal task (task.num_frames > 1) when its model file
# states nothing else (model.temporal_args): TerraTorch's TemporalWrapper runs the backbone on each
# date and averages the features over time, so every neck and decoder sees one image's features.
TEMPORAL_WRAPPER = {"backbone_use_temporal": True, "backbone_temporal_pooling": "mean"}


# How TerraTorch's task classes prefix a metric with its split (its detection task with an underscore).
_STAGE_PREFIXES = ("val/", "test/", "train/", "val_", "test_", "train_")


def metric_name(metric: str) -> str:
    """A logged metric without its split: val/mIoU -> mIoU, test_map -> map."""
    return next((metric[len(p) :] for p in _STAGE_PREFIXES if metric.startswith(p)), metric)


def check_metric(task_type: str, metric: str, where: str, val_prefix: str = "val/") -> None:
    """Refuse a metric that TerraTorch logs for other task types only; names it does not know (a
    per-class IoU, a custom metric) are left to the job's own check that the metric was logged.
    val_prefix: how the type's task class names its validation metrics (val/mIoU, val_map)."""
    name = metric_name(str(metric))
    own = LOGGED_METRICS.get(task_type, set())
    others = sorted(t for t, names in LOGGED_METRICS.items() if name in names and t != task_type)
    if name in own or not others:
        return
    raise ConfigError(
        f"{where}: task.metric={metric!r} is a {' / '.join(others)} metric, which {task_type} tasks "
        f"never log; they log {', '.join(val_prefix + n for n in sorted(own))}"
    )


def temporal_args(task: DictConfig, model: DictConfig, plain: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """The model's arguments for a multi-temporal task's (B, C, T, H, W) batches: its own
    `temporal_args` (the Prithvi models take the frames natively: {}), else TerraTorch's wrapper."""
    frames = task.get("num_frames", 1)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(
            f"task '{task.name}': task.num_frames={frames!r} is not possible: it is the number of "
            "time steps per sample, a whole number of at least 1"
        )
    if frames == 1:
        return {}
    if "temporal_args" in model and model.temporal_args is not None:
        return plain(model.temporal_args)
    factory = model.get("model_factory", "EncoderDecoderFactory")
    if "temporal_args" in model or factory not in WRAPPING_FACTORIES:
        why = (
            "its model file says it takes no time series (temporal_args: null)"
            if "temporal_args" in model
            else f"its {factory} has no temporal wrapper (only {' and '.join(sorted(WRAPPING_FACTORIES))} do)"
        )
        raise ConfigError(
            f"task '{task.name}' is a time series of {frames} frames, but model={model.name} takes "
            f"single images and {why}. Pick a multi-temporal model, or set task.num_frames=1 where "
            "the task can reduce its series to one image"
        )
    return dict(TEMPORAL_WRAPPER)


def check_freezable(task_kwargs: Mapping[str, Any], model: DictConfig, where: str) -> None:
    """protocol=frozen (freeze_backbone) on a model whose encoder cannot be frozen is refused."""
    if not task_kwargs.get("freeze_backbone"):
        return
    if model.get("freezable", True) is False:
        reason = model.get("freezable_reason") or "its model file says its encoder cannot be frozen (freezable: false)"
        raise ConfigError(
            f"{where}: protocol=frozen freezes the encoder, but model={model.name} has none to freeze: "
            f"{reason}. Use protocol=full_ft, or another model"
        )
    if (task_kwargs.get("model_args") or {}).get("peft_config") or task_kwargs.get("peft_config"):
        raise ConfigError(
            f"{where}: protocol=frozen freezes the encoder, but model={model.name} trains it through "
            "PEFT adapters inside the encoder (model_args.peft_config), which freezing it would freeze too. "
            "Drop peft_config for a frozen encoder, or use protocol=full_ft for PEFT"
        )
