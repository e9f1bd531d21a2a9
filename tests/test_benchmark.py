"""The whole protocol on real TerraTorch training (CPU, synthetic GeoTIFFs): tune each cell, repeat
its best configuration with seeds, test each repeat on its best checkpoint, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_csv

pytestmark = pytest.mark.slow

CELLS = {f"task={t},model={m}" for t in ("synthetic_cls", "synthetic_seg") for m in ("prithvi_tiny", "resnet50_unet")}
TEST_METRIC = {"synthetic_cls": "test/Accuracy", "synthetic_seg": "test/mIoU"}


def test_two_tasks_two_models_are_tuned_repeated_tested_and_reported(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", f"hydra.sweep.dir={sweep}", "task=synthetic_cls,synthetic_seg",
                     "model=prithvi_tiny,resnet50_unet", "model.model_args.backbone_pretrained=false",
                     "search_space=demo", "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=3", "task.max_epochs=1",
                     f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert result.returncode == 0, result.stderr[-3000:]

    repeats = read_csv(sweep / "repeats.csv")
    assert {r["cell"] for r in repeats} == CELLS
    for cell in CELLS:
        rows = [r for r in repeats if r["cell"] == cell]
        assert sorted(int(r["seed"]) for r in rows) == [1, 2, 3] and {r["state"] for r in rows} == {"COMPLETE"}
        task = rows[0]["task"]
        # Tested on its own best checkpoint: the test value is the task metric on the test split.
        assert all(float(r["test_value"]) == float(r[TEST_METRIC[task]]) for r in rows)
        assert all(Path(r["checkpoint"]) == Path(r["job_dir"]) / "checkpoints" / "best.ckpt" for r in rows)
        assert all(Path(r["checkpoint"]).is_file() and float(r["duration_s"]) > 0 for r in rows)
    # A repeat was running while another cell still tuned: no barrier between the phases.
    tuning = read_csv(sweep / "results.csv")
    assert min(float(r["started_at"]) for r in repeats) < max(float(r["finished_at"]) for r in tuning)

    from mlflow import MlflowClient

    from tests.helpers import tree

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    levels = tree(client, "bench")
    cell_runs = {r.info.run_id: r for r in levels["cell"]}
    assert len(levels["repeat"]) == 12 and len(levels["trial"]) == 8
    for run in levels["repeat"]:
        parent = cell_runs[run.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["bench.cell"] == run.data.tags["bench.cell"] and run.info.status == "FINISHED"
        assert run.data.tags["bench.seed"] in {"1", "2", "3"}
    for run in cell_runs.values():
        assert run.data.metrics["n_repeats"] == 3
        assert {"test_mean", "test_std", "test_iqm"} <= set(run.data.metrics)
    assert {r["mlflow_run_id"] for r in repeats} == {r.info.run_id for r in levels["repeat"]}

    report = subprocess.run([sys.executable, "-m", "bench.report", str(sweep), "--bootstrap", "200"],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    out = sweep / "report"
    scores = read_csv(out / "scores.csv")
    assert len(scores) == 12
    assert list(scores[0])[:5] == ["dataset", "Metric", "test metric", "Seed", "backbone"]
    assert {r["Metric"] for r in scores} == {"Accuracy", "Multiclass_Jaccard_Index"}  # the leaderboard's labels
    assert list(read_csv(out / "datasets.csv")[0]) == ["model", "dataset", "metric", "direction", "n_seeds", "raw_mean",
                                                       "raw_std", "normalized_iqm", "ci_low", "ci_high"]
    assert list(read_csv(out / "groups.csv")[0]) == ["model", "group", "value", "ci_low", "ci_high", "se", "reason"]
    assert list(read_csv(out / "pairs.csv")[0]) == ["group", "model_a", "model_b", "probability", "ci_low", "ci_high"]
    assert len(read_csv(out / "tuning.csv")) == 4
    for name in ("report.html", "groups.png", "datasets.png", "profile.png", "tuning.png"):
        assert (out / name).is_file(), name
    benchmark = json.loads((sweep / "mlflow.json").read_text())["benchmark_run"]
    logged = {a.path for a in client.list_artifacts(benchmark, "report")}
    assert {"report/report.html", "report/groups.csv", "report/scores.csv"} <= logged

    # The same scores read back from the MLflow experiment instead of the sweep dir.
    from_mlflow = subprocess.run([sys.executable, "-m", "bench.report", "mlflow:bench", "--tracking-uri",
                                  f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "from_mlflow"),
                                  "--bootstrap", "50"], capture_output=True, text=True, timeout=300)
    assert from_mlflow.returncode == 0, from_mlflow.stderr[-2000:]
    assert read_csv(tmp_path / "from_mlflow" / "scores.csv") == scores


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
    result = run_cli("-m", f"hydra.sweep.dir={sweep}", "task=synthetic_cls", "search_space=demo",
                     "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=2", "task.max_epochs=1", "mlflow.enabled=false",
                     env={"BENCH_DATA_DIR": str(data)})
    assert result.returncode == 1
    assert [r["state"] for r in read_csv(sweep / "results.csv")] == ["COMPLETE", "COMPLETE"]
    (failed,) = read_csv(sweep / "repeats.csv")  # the cell's repeats stop at the first: all would fail
    assert failed["state"] == "FAIL"
    assert "task 'synthetic_cls': the test split could not be evaluated" in failed["error"]
    assert f"Check the test files under {root / 'test'}" in failed["error"]
    assert "cells stopped before their budget: default repeats" in result.stderr
    assert "Traceback" not in result.stderr
