"""The test split on real TerraTorch training (CPU, synthetic GeoTIFFs): only seed repeats read it.
(The whole protocol, tune > repeat > test > report, is test_cli.py's benchmark test.)"""

from __future__ import annotations

import pytest

from tests.helpers import read_csv

pytestmark = [pytest.mark.slow, pytest.mark.duration(30)]

CELLS = {f"task={t},model={m}" for t in ("synthetic_cls", "synthetic_seg") for m in ("prithvi_tiny", "resnet50")}
TEST_METRIC = {"synthetic_cls": "test/Accuracy", "synthetic_seg": "test/mIoU"}


def test_tuning_never_reads_the_test_split_and_repeats_say_why_they_cannot(run_cli, tmp_path):
    """A task whose test tiles are unreadable: tuning completes, then its repeats fail plainly."""
    from bench.data.synthetic import ensure_synthetic_dataset

    data = tmp_path / "data"
    root = data / "synthetic_cls_v1"
    ensure_synthetic_dataset(root=str(root), kind="classification")
    broken = [path for path in (root / "test").rglob("*.tif")]
    assert broken
    for path in broken:
        path.write_bytes(b"not a GeoTIFF")
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        f"hydra.sweep.dir={sweep}",
        "task=synthetic_cls",
        "search_space=demo",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=2",
        "task.max_epochs=1",
        "mlflow.enabled=false",
        env={"BENCH_DATA_DIR": str(data)},
    )
    assert result.returncode == 1
    assert [r["state"] for r in read_csv(sweep / "results.csv")] == ["COMPLETE", "COMPLETE"]
    (failed,) = read_csv(sweep / "repeats.csv")  # the cell's repeats stop at the first: all would fail
    assert failed["state"] == "FAIL"
    assert "task 'synthetic_cls': the test split could not be evaluated" in failed["error"]
    assert f"Check the test files under {root / 'test'}" in failed["error"]
    assert "cells stopped before their budget: task=synthetic_cls,model=prithvi_tiny repeats" in result.stderr
    assert "Traceback" not in result.stderr
