"""What every format test asserts: the task's own TerraTorch datamodule reads files written in the
dataset's real layout, and one small model trains a step on them, validates and tests.

The writers (tests/formats/<family>.py) produce a few samples per split; the task config is the
catalog's own (conf/task/<task>.yaml), pointed at them through its dataset env var.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

# One step of each stage is enough to prove the format; the tiny ViT trains it on CPU in seconds.
ONE_STEP = [
    "model=prithvi_tiny",
    "task.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "hparams.batch_size=2",
    "mlflow.enabled=false",
]


# Task types whose batches hold, per image, a list of objects rather than one target tensor.
DETECTION = ("object_detection", "instance_segmentation")


def check_detection_batch(task: str, batch: dict[str, Any], fields, num_classes: int, masks: bool) -> None:
    """Per image (under the task's own field names, as ObjectDetectionTask reads them): its boxes (N, 4) in
    pixels inside the tile, x2 > x1 and y2 > y1; N class indices, real classes (not the background 0
    torchvision reserves, nor past num_classes); for instance segmentation N binary masks of the tile's size,
    each framed by its box.
    Every image of the fixtures holds at least one object."""
    height, width = batch["image"].shape[-2:]
    boxes, labels = batch[fields.boxes_field], batch[fields.labels_field]
    assert isinstance(boxes, list) and len(boxes) == len(labels) == 2, (task, type(boxes), len(boxes))
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        n = b.shape[0]
        assert n >= 1 and tuple(b.shape) == (n, 4) and tuple(lab.shape) == (n,), (
            task,
            i,
            tuple(b.shape),
            tuple(lab.shape),
        )
        assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()), (task, i, b)
        assert float(b.min()) >= 0 and float(b[:, 2].max()) <= width and float(b[:, 3].max()) <= height, (task, i, b)
        assert int(lab.min()) >= 0 and int(lab.max()) < num_classes, (task, i, lab)
        if masks:
            m = batch[fields.masks_field][i]
            assert tuple(m.shape) == (n, height, width), (task, i, tuple(m.shape), (n, height, width))
            assert set(m.unique().tolist()) <= {0, 1} and bool((m.flatten(1).amax(1) == 1).all()), (task, i)
            # each box frames its own mask: the mask's extreme pixels within a pixel and a half of its edges (PASTIS
            # draws boxes from them exactly; substation's come from sub-pixel polygons)
            from bench.data.instances import boxes_of

            assert bool(((boxes_of(m) - b).abs() <= 1.5).all()), (task, i, b, boxes_of(m))


def load_batch(cfg) -> tuple[Any, dict[str, Any]]:
    """The task's datamodule, set up for fitting, and the first training batch it yields."""
    from bench.preflight import preflight

    spec = preflight(cfg)  # the dataset check passes on the written files
    datamodule = instantiate(spec.datamodule, _convert_="all")
    datamodule.setup("fit")
    return datamodule, next(iter(datamodule.train_dataloader()))


def check_task_reads(compose_cfg: Callable, task: str, *overrides: str, train_step: bool = True) -> dict[str, Any]:
    """Assert a batch has the task's bands and labels of the task's kind, then (train_step) train,
    validate and test one step through bench.train; returns train()'s result (test metrics included)."""
    from bench.train import train

    cfg = compose_cfg(f"task={task}", *ONE_STEP, *overrides)
    _, batch = load_batch(cfg)
    image, target = batch["image"], batch.get("mask", batch.get("label"))
    n_bands = len(cfg.task.bands)
    # (B, C, H, W), or (B, C, T, H, W) for multi-temporal tasks.
    assert image.shape[0] == 2 and image.shape[1] == n_bands, (task, tuple(image.shape), n_bands)
    assert target is not None, f"{task}: the batch has neither a mask nor a label: {sorted(batch)}"
    if cfg.task.type in DETECTION:
        check_detection_batch(
            task, batch, cfg.task.task_args, cfg.task.num_classes, cfg.task.type == "instance_segmentation"
        )
    elif cfg.task.type in ("segmentation", "regression"):
        assert tuple(target.shape[-2:]) == tuple(image.shape[-2:]), (task, tuple(target.shape), tuple(image.shape))
    elif cfg.task.type == "multilabel_classification":
        assert target.shape == (2, cfg.task.num_classes), (task, tuple(target.shape))
    else:
        assert target.shape == (2,) and int(target.max()) < cfg.task.num_classes, (task, target)

    if not train_step:
        return {}
    result = train(compose_cfg(f"task={task}", *ONE_STEP, "evaluate_test=true", *overrides))
    metric = OmegaConf.select(cfg, "task.metric")
    assert result["value"] == result["value"], f"{task}: {metric} was not logged"  # not NaN
    assert result["test_value"] == result["test_value"], f"{task}: the test split gave no metric"
    return result
