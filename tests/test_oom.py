"""A trial that runs out of GPU memory is retried at half the batch size and twice the gradient
accumulation, from scratch; only batch size 1 (or no retry left) fails it. The OOM is injected by a
config-declared callback (tests/oom_injection.py), so this runs on the CPU (slow: seconds per test)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.oom import TrialOutOfMemoryError
from bench.tracking.trial_logger import TrialLogger
from bench.train import train

pytestmark = [pytest.mark.slow, pytest.mark.duration(85)]

# Few batches, so every attempt is quick; 8 train batches at batch size 2 are 2 optimizer steps at 4.
FAST = ["task.max_epochs=2", "task.patience=2", "+trainer.limit_train_batches=8", "+trainer.limit_val_batches=2"]


def _inject_oom(threshold: int, from_epoch: int = 0) -> list[str]:
    return [
        "+callbacks.inject_oom._target_=tests.oom_injection.InjectOOM",
        f"+callbacks.inject_oom.threshold={threshold}",
        f"+callbacks.inject_oom.from_epoch={from_epoch}",
    ]


def _record_epochs(path) -> list[str]:
    return ["+callbacks.record._target_=tests.oom_injection.RecordEpochs", f"+callbacks.record.path={path}"]


def test_an_out_of_memory_trial_is_rerun_from_scratch_at_half_the_batch_size(compose_cfg, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    record, out = tmp_path / "epochs.jsonl", tmp_path / "job"
    # Batches above 2 tiles run out of memory from epoch 1 on: each attempt at 8 and 4 finishes
    # epoch 0 (and writes its last.ckpt, as on a launcher that reruns jobs) before failing, which the
    # next attempt must not resume.
    cfg = compose_cfg(
        "hparams.batch_size=8",
        "launcher.reruns_jobs=true",
        *FAST,
        *_inject_oom(2, from_epoch=1),
        *_record_epochs(record),
        f"output_dir={out}",
    )
    client = mlflow.MlflowClient()
    run_id = client.create_run("0").info.run_id  # the Default experiment's
    # As the app runs a job (bench/__main__.py): the run is closed once train() returns, after
    # everything its logger queued (the OOM-retry tags among it) has been sent.
    logger = TrialLogger(client.tracking_uri, run_id)
    returned = logger.around(lambda: train(cfg, logger))
    assert returned == {
        "value": pytest.approx(returned["value"]),
        "oom_retries": 2,
        "batch_size": 2,
        "accumulate_grad_batches": 4,
    }
    assert math.isfinite(returned["value"])
    epochs = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["epoch"], e["batch_sizes"], e["accumulate_grad_batches"]) for e in epochs] == [
        (0, [8], 1),  # first attempt: 4 batches of 8, then out of memory in epoch 1
        (0, [4], 2),  # first retry: started over at epoch 0 (its last.ckpt was removed), then OOM
        (0, [2], 4),  # second retry: both epochs at 2 tiles per batch...
        (1, [2], 4),
    ]
    # ...and one optimizer step per 4 batches: 8 tiles per step, as the configured batch size of 8.
    final = epochs[-2:]
    assert [e["batches"] for e in final] == [8, 8]
    assert [e["global_step"] for e in final] == [2, 4]
    assert (out / "checkpoints" / "best.ckpt").is_file() and not (out / "checkpoints" / "last.ckpt").exists()
    tags = client.get_run(run_id).data.tags
    recorded = ("bench.oom_retries", "bench.batch_size", "bench.accumulate_grad_batches")
    assert [tags[name] for name in recorded] == ["2", "2", "4"]

    # Fresh weights with the same seed: the final attempt is the run that asked for 2 x 4 directly.
    direct = train(
        compose_cfg(
            "hparams.batch_size=2", "+trainer.accumulate_grad_batches=4", *FAST, f"output_dir={tmp_path / 'direct'}"
        )
    )
    assert direct == returned["value"]


def test_out_of_memory_at_batch_size_1_fails_the_trial(compose_cfg, tmp_path):
    with pytest.raises(TrialOutOfMemoryError, match="ran out of GPU memory at batch size 1") as info:
        train(compose_cfg("hparams.batch_size=8", *FAST, *_inject_oom(0)))
    plan = info.value.plan  # the last attempt: 8 -> 4 -> 2 -> 1, three retries
    assert (plan.batch_size, plan.accumulate_grad_batches, plan.oom_retries) == (1, 8, 3)
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)


def test_no_retry_is_made_when_oom_retries_is_0(compose_cfg):
    with pytest.raises(TrialOutOfMemoryError, match="oom_retries=0 allows no further retry") as info:
        train(compose_cfg("hparams.batch_size=8", "oom_retries=0", *FAST, *_inject_oom(2)))
    assert (info.value.plan.batch_size, info.value.plan.oom_retries) == (8, 0)
