"""GEO-Bench-2 from bench's own runs, end to end: `experiment=geobench_v2` over two small random models on
the 19 datasets' real-format fixtures (tests/formats), tuned, repeated with 2 seeds and tested, then
`bench.report --groups geobench2`: every capability group of the leaderboard, Core included, gets a value
with its interval, and report/submission/ passes the leaderboard's validation.

Sized to minutes on 2 CPU cores, not skipped: 64 px tiles, one epoch of one batch, one tuning trial a
cell (detection's 10 and everyone's 16 are pinned by tests/test_protocol_presets.py), batch size 2 (the
fixtures hold 3 samples a split: the protocol's 8-32 would give no batch), fewer detection proposals."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.formats.geobench_v2_all import WRITERS
from tests.helpers import studies
from tests.test_report_leaderboard import GROUPS, assert_passes_leaderboard_validation

pytestmark = [pytest.mark.slow, pytest.mark.duration(260)]

MODELS = ("prithvi_tiny", "resnet50")
# Faster / Mask R-CNN with random weights keep up to 100 boxes an image, each through 4 convolutions of the mask
# head: most of this test's time. Fewer proposals and boxes (torchvision's own arguments, which the detection
# heads take as framework_*; instance_segmentation's head is object_detection's) test the same plumbing.
FEWER_BOXES = [
    f"+model.task_types.object_detection.framework_{key}={value}"
    for key, value in (
        ("rpn_post_nms_top_n_train", 64),
        ("rpn_post_nms_top_n_test", 32),
        ("box_batch_size_per_image", 32),
        ("box_detections_per_img", 8),
    )
]
SEEDS = 2


def test_geobench_v2_sweep_scores_every_capability_group_and_makes_a_valid_submission(run_cli, tmp_path):
    root = tmp_path / "geobench_v2"
    for write in {id(w): w for w in WRITERS.values()}.values():  # pastis_r reads pastis's files
        write(root)
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "experiment=geobench_v2",
        f"model={','.join(MODELS)}",
        "model.model_args.backbone_pretrained=false",
        "task.image_size=64",
        "task.max_epochs=1",
        "task.datamodule.num_workers=0",
        "hparams.batch_size=2",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "hydra.sweeper.n_trials=1",
        "task.n_trials=1",
        *FEWER_BOXES,
        f"hydra.sweeper.repeats={SEEDS}",
        "mlflow.enabled=false",
        f"hydra.sweep.dir={sweep}",
        env={"GEO_BENCH_V2_DIR": str(root), "HF_HUB_OFFLINE": "1"},
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    repeats = pd.read_csv(sweep / "repeats.csv")
    assert set(repeats["dataset"]) == set(WRITERS) and len(WRITERS) == 19  # writers are keyed by the dataset
    assert (repeats["state"] == "COMPLETE").all() and len(repeats) == 19 * len(MODELS) * SEEDS
    assert repeats["test_value"].notna().all()
    by_task = repeats.groupby("dataset")
    assert set(by_task["metric"].first()[["everwatch", "nzcattle"]]) == {"val_map"}
    assert set(by_task["metric"].first()[["substation", "pastis_r"]]) == {"val_segm_map"}
    assert by_task["direction"].first()["biomassters"] == "minimize"
    # every tuning trial, detection's included, reported its epoch's value to its study: what a pruner reads
    found = studies(sweep)
    assert len(found) == 19 * len(MODELS)
    for cell, study in found.items():
        assert [t.state.name for t in study.trials] == ["COMPLETE"], cell
        assert study.trials[0].intermediate_values, cell

    out = tmp_path / "report"
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.report",
            str(sweep),
            "--groups",
            "geobench2",
            "--out",
            str(out),
            "--bootstrap",
            "200",
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    groups = pd.read_csv(out / "groups.csv")
    assert sorted(groups["group"].unique()) == sorted(GROUPS) and set(groups["model"]) == set(MODELS)
    scored = groups.set_index(["model", "group"])
    for model in MODELS:
        for group in GROUPS:
            row = scored.loc[(model, group)]
            assert pd.notna(row["value"]) and row["ci_low"] <= row["value"] <= row["ci_high"], (model, group, row)
    # the submission folder: bench's rows in the leaderboard's vocabulary; only the seed count (2 here, 5
    # there) is what the leaderboard would refuse
    submitted = assert_passes_leaderboard_validation(out / "submission", seeds=SEEDS)
    labels = submitted.groupby("dataset").first()
    assert labels.loc["everwatch", ["Metric", "decoder"]].tolist() == ["test_test_map", "faster-rcnn"]
    assert labels.loc["pastis_r", ["Metric", "decoder"]].tolist() == ["test_test_segm_map", "mask-rcnn"]
    assert labels.loc["biomassters", "Metric"] == "RMSE" and labels.loc["so2sat", "Metric"] == "Overall_Accuracy"
    objections = [line for line in report.stderr.splitlines() if "submission/:" in line]
    assert len(objections) == 1 and "wants 5 seeds" in objections[0], objections
