"""What every format test asserts: the task's own TerraTorch datamodule reads files written in the
dataset's real layout, and one small model trains a step on them, validates and tests.

The writers (tests/formats/<family>.py) produce a few samples per split; the task config is the
catalog's own (conf/task/<task>.yaml), pointed at them through its dataset env var.
"""

from __future__ import annotations

from typing import Any, Callable

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


def load_batch(cfg) -> tuple[Any, dict[str, Any]]:
    """The task's datamodule, set up for fitting, and the first training batch it yields."""
    from bench.preflight import preflight

    spec = preflight(cfg)  # the dataset check passes on the written files
    datamodule = instantiate(spec.datamodule, _convert_="all")
    datamodule.setup("fit")
    return datamodule, next(iter(datamodule.train_dataloader()))


def check_task_reads(compose_cfg: Callable, task: str, *overrides: str) -> dict[str, Any]:
    """Assert a batch has the task's bands and labels of the task's kind, then train, validate and
    test one step through bench.train; returns train()'s result (test metrics included)."""
    from bench.train import train

    cfg = compose_cfg(f"task={task}", *ONE_STEP, *overrides)
    _, batch = load_batch(cfg)
    image, target = batch["image"], batch.get("mask", batch.get("label"))
    n_bands = len(cfg.task.bands)
    # (B, C, H, W), or (B, C, T, H, W) for multi-temporal tasks.
    assert image.shape[0] == 2 and image.shape[1] == n_bands, (task, tuple(image.shape), n_bands)
    assert target is not None, f"{task}: the batch has neither a mask nor a label: {sorted(batch)}"
    if cfg.task.type in ("segmentation", "regression"):
        assert tuple(target.shape[-2:]) == tuple(image.shape[-2:]), (task, tuple(target.shape), tuple(image.shape))
    elif cfg.task.type == "multilabel_classification":
        assert target.shape == (2, cfg.task.num_classes), (task, tuple(target.shape))
    else:
        assert target.shape == (2,) and int(target.max()) < cfg.task.num_classes, (task, target)

    result = train(compose_cfg(f"task={task}", *ONE_STEP, "evaluate_test=true", *overrides))
    metric = OmegaConf.select(cfg, "task.metric")
    assert result["value"] == result["value"], f"{task}: {metric} was not logged"  # not NaN
    assert result["test_value"] == result["test_value"], f"{task}: the test split gave no metric"
    return result
