"""From a composed config to what train() builds, without importing torch.

The merge is four OmegaConf layers, weakest first:
    model (model_factory, model_args)  <  model.task_types[task.type] (the neck, decoder and head
    that suit the model for this kind of task)  <  task (model_args, task_args)  <  hparams (the trial)
`hparams.batch_size` is the one trial value that goes to the datamodule instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.cell_checks import check_freezable, check_metric, temporal_args
from bench.errors import ConfigError
from bench.objectives import Objectives, parse_objectives
from bench.splits import HeldOut, held_out
from hydra_plugins.bench_sweeper.api import DIRECTIONS, PHASE_TUNE


@dataclass(frozen=True)
class Stages:
    """How a TerraTorch task class names a metric on each split: its pixelwise and classification
    tasks log val/mIoU and test/mIoU, its ObjectDetectionTask val_map and test_map (and no loss on
    the validation split: it only predicts there)."""

    train: str = "train/"
    val: str = "val/"
    test: str = "test/"
    val_loss: bool = True

    def bare(self, key: str, split: str) -> str | None:
        """The metric's name without this split's prefix; None for a key of another split."""
        prefix = getattr(self, split)
        return key[len(prefix) :] if key.startswith(prefix) and len(key) > len(prefix) else None


@dataclass(frozen=True)
class TaskType:
    """What a task type trains with: TerraTorch's task class, how it names its metrics, and for the
    detection types the factory and framework the type implies whatever the model file says."""

    task_class: str
    stages: Stages = Stages()
    model_factory: str | None = None  # None: the model file's own
    model_args: tuple[tuple[str, Any], ...] = ()  # set over the model's and its head's


_DETECTION = Stages(train="train_", val="val_", test="test_", val_loss=False)
TASK_TYPES = {
    "segmentation": TaskType("terratorch.tasks.SemanticSegmentationTask"),
    "classification": TaskType("terratorch.tasks.ClassificationTask"),
    "multilabel_classification": TaskType("terratorch.tasks.MultiLabelClassificationTask"),
    "regression": TaskType("terratorch.tasks.PixelwiseRegressionTask"),
    # Boxes (Faster R-CNN) and boxes with a mask each (Mask R-CNN): one TerraTorch task, its framework
    # picked by model_args.framework; the model's task_types entry gives the necks to a multi-scale map.
    "object_detection": TaskType(
        "terratorch.tasks.ObjectDetectionTask",
        _DETECTION,
        "ObjectDetectionModelFactory",
        (("framework", "faster-rcnn"),),
    ),
    "instance_segmentation": TaskType(
        "terratorch.tasks.ObjectDetectionTask", _DETECTION, "ObjectDetectionModelFactory", (("framework", "mask-rcnn"),)
    ),
}
# Optuna's direction names (as the sweeper spells them) -> Lightning's monitor modes.
MONITOR_MODES = dict(zip(DIRECTIONS, ("min", "max")))


@dataclass(frozen=True)
class TrialSpec:
    """Everything train() needs, merged and checked; plain containers only."""

    task_name: str
    task_class: str  # dotted path, imported lazily
    task_kwargs: dict[str, Any]  # TerraTorch task arguments
    datamodule: dict[str, Any]  # with _target_, for hydra.utils.instantiate
    metric: str
    test_metric: str  # the same metric on the test split, which only seed repeats evaluate
    mode: str  # "min" | "max"
    max_epochs: int
    patience: int
    # task.metric as a list (bench.objectives): metric above is its primary one. None: one metric.
    objectives: Objectives | None = None
    # task.validation_from_train: validation held out of the training split (bench.splits). None:
    # the datamodule's own validation split.
    heldout: HeldOut | None = None
    # How the task class names metrics per split (the monitor, the test metric, the val/test check).
    stages: Stages = Stages()
    # The trial's context, set by preflight (bench.preflight) from the sweeper's trial node, so no
    # module asks the config again: "tune" / "repeat" in a bench sweep, None in a single run; the
    # trial's number in its cell's study; whether this job evaluates the test split (a repeat, or
    # a single run with evaluate_test=true; never a tuning trial: bench.evaluation).
    phase: str | None = None
    trial_number: int | None = None
    tests: bool = False

    @property
    def guards_splits(self) -> bool:
        """Whether this job compares the validation and test samples its datamodule resolves: every
        job that tests, and a cell's first tuning trial, so a cell that would test on its
        validation samples stops before its budget is spent (bench.data.heldout)."""
        return self.tests or (self.phase == PHASE_TUNE and self.trial_number == 0)


def _required(node: DictConfig, key: str, group: str) -> Any:
    if key not in node or node[key] is None:
        raise ConfigError(f"{group}.{key} is not set; every {group} config must set it")
    return node[key]


def monitor_mode(direction: str, where: str = "task.direction") -> str:
    """Lightning's mode for an Optuna direction, rejecting anything else."""
    if direction not in MONITOR_MODES:
        raise ConfigError(f"{where}={direction!r} is not a direction; use one of {sorted(MONITOR_MODES)}")
    return MONITOR_MODES[direction]


def task_type_for(task_type: str) -> TaskType:
    if task_type not in TASK_TYPES:
        raise ConfigError(
            f"task.type={task_type!r} has no TerraTorch task class in bench; "
            f"supported types: {', '.join(sorted(TASK_TYPES))}"
        )
    return TASK_TYPES[task_type]


def build_spec(cfg: DictConfig) -> TrialSpec:
    """Merge the config layers and validate them. Raises ConfigError with a plain message."""
    task, model = cfg.task, cfg.model
    task_name = _required(task, "name", "task")
    where = f"task '{task_name}'"
    kind = task_type_for(_required(task, "type", "task"))
    metric, direction = _required(task, "metric", "task"), _required(task, "direction", "task")
    objectives = parse_objectives(metric, direction, task_name)  # a list: several objectives
    if objectives is not None:
        metric, direction = objectives.primary, objectives.primary_direction
    mode = monitor_mode(direction)
    check_metric(task.type, metric, where, kind.stages.val)
    for key in ("datamodule", "max_epochs"):
        _required(task, key, "task")
    if "_target_" not in task.datamodule:
        raise ConfigError(f"{where}: task.datamodule needs a _target_ (the datamodule class)")
    _required(model, "model_args", "model")
    head = _head_for(model, task_type=task.type, where=where)
    check_bands(task, model)
    _check_partition(task, where)

    # Resolve each layer in the full config first: interpolations such as ${task.model_bands}
    # need the root, which a merged fragment no longer has.
    def plain(node: Any) -> dict[str, Any]:
        return plain_dict(node) if node is not None else {}

    hparams = plain(cfg.get("hparams"))
    batch_size = _positive_int(hparams.pop("batch_size", None), "hparams.batch_size", "the number of tiles per batch")
    max_epochs = _positive_int(task.max_epochs, "task.max_epochs", "the most epochs a trial trains")
    patience = task.get("patience")
    patience = (
        max_epochs
        if patience is None
        else _positive_int(
            patience,
            "task.patience",
            "the validation epochs without improvement before early stopping (null: never stop early)",
        )
    )
    merged = OmegaConf.merge(
        {
            "model_factory": kind.model_factory or model.get("model_factory", "EncoderDecoderFactory"),
            "model_args": plain(model.model_args),
        },
        {"model_args": temporal_args(task, model, plain)},
        {"model_args": plain(head)},
        {"model_args": plain(task.get("model_args"))},
        {"model_args": dict(kind.model_args)},
        plain(task.get("task_args")),
        hparams,
    )
    task_kwargs = plain_dict(merged)
    check_freezable(task_kwargs, model, where)
    # A task without classes (regression: num_classes null) gives the head no class count.
    if task_kwargs["model_args"].get("num_classes", 0) is None:
        del task_kwargs["model_args"]["num_classes"]
    datamodule = {**plain(task.datamodule), "batch_size": batch_size}
    return TrialSpec(
        task_name=task_name,
        task_class=kind.task_class,
        task_kwargs=task_kwargs,
        datamodule=datamodule,
        metric=metric,
        test_metric=task.get("test_metric") or _on_test_split(metric, task_name, kind.stages),
        mode=mode,
        max_epochs=max_epochs,
        patience=patience,
        objectives=objectives,
        heldout=held_out(task),
        stages=kind.stages,
    )


def plain_dict(node: Any) -> dict[str, Any]:
    """A config mapping as a plain, resolved dict (what TrialSpec and Lightning take)."""
    plain = OmegaConf.to_container(node, resolve=True)
    if not isinstance(plain, dict):
        raise ConfigError(f"expected a mapping, got {type(plain).__name__}: {plain!r}")
    return {str(key): value for key, value in plain.items()}


def _head_for(model: DictConfig, task_type: str, where: str) -> DictConfig | None:
    """The model's neck/decoder/head for this task type. A model without `task_types` puts all of
    it in model_args; one with it supports exactly the types it lists."""
    types = model.get("task_types")
    if types is None:
        return None
    if task_type not in types or types[task_type] is None:
        raise ConfigError(
            f"model={model.name} has no neck and decoder for {task_type} tasks ({where}); it supports "
            f"{', '.join(sorted(k for k in types if types[k] is not None))}. Pick another model, or add "
            f"model.task_types.{task_type}"
        )
    return types[task_type]


def check_bands(task: DictConfig, model: DictConfig) -> None:
    """A cell trains on bands its task offers and its model can take; anything else is named here,
    before a job is launched."""
    bands = list(task.get("bands") or [])
    offered = task.get("band_names")
    if offered is not None:
        unknown = [b for b in bands if b not in offered]
        if unknown:
            raise ConfigError(
                f"task '{task.name}': task.bands has {', '.join(map(str, unknown))}, which the dataset "
                f"does not offer; it offers {', '.join(offered)}"
            )
    accepts = model.get("accepts_bands")
    if accepts is None:
        return
    missing = [b for b in task.model_bands if b not in accepts]
    if missing:
        usable = [b for b, canonical in zip(bands, task.model_bands) if canonical in accepts]
        hint = (
            f"pick a subset it can take, e.g. task.bands=[{','.join(usable)}]"
            if usable
            else "no band of this task is one it can take"
        )
        raise ConfigError(
            f"model={model.name} cannot take task '{task.name}' bands {', '.join(missing)}: its "
            f"weights know only {', '.join(accepts)}; {hint}"
        )


def _check_partition(task: DictConfig, where: str) -> None:
    partitions = task.get("partitions")
    if partitions is not None and task.get("partition") not in partitions:
        raise ConfigError(
            f"{where}: task.partition={task.get('partition')!r} is not one of this dataset's "
            f"partitions: {', '.join(partitions)}"
        )


def _on_test_split(metric: str, task_name: str, stages: Stages = Stages()) -> str:
    """TerraTorch logs each metric once per split, prefixed with the stage: val/mIoU, test/mIoU
    (val_map, test_map for detection: `stages`)."""
    name = stages.bare(metric, "val")
    if name is None:
        raise ConfigError(
            f"task '{task_name}': task.metric={metric!r} is not a TerraTorch validation metric "
            f"({stages.val}<name>), so its test-split counterpart is unknown; set task.test_metric"
        )
    return f"{stages.test}{name}"


def _positive_int(value, key: str, meaning: str) -> int:
    """Values Lightning or the datamodule would misread (0 epochs, batch size 0) are refused here,
    with the key, before anything is launched."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is not possible: it is {meaning}, a whole number of at least 1")
    return value
