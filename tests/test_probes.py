"""protocol=knn and protocol=linear_probe, trained for real on the synthetic tasks (GeoTIFF tiles) with
prithvi_tiny at random init: a probe sweep with seed repeats (results and repeats labelled, the embeddings
computed by the first trial only: its counter, embeddings_built, is 0 in every later one), a cache hit on a
second trial, the segmentation linear probe tested on its test split, and the refusals before launch."""

from __future__ import annotations

import logging

import pytest

from bench.train import train
from tests.helpers import read_csv

pytestmark = pytest.mark.duration(90)


def test_a_linear_probe_sweep_embeds_once_and_labels_its_rows(run_cli, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "protocol=linear_probe",
        "probe.epochs=20",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.repeats=2",
        "mlflow.enabled=false",
        f"embeddings.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = read_csv(sweep / "results.csv")
    assert [r["state"] for r in trials] == ["COMPLETE"] * 3
    assert {r["frozen_or_full_ft"] for r in trials} == {"linear_probe"}
    assert {"probe.lr", "probe.weight_decay"} <= set(trials[0])  # the probe's own search space
    # The first trial embedded the training and validation splits; every later trial read them.
    assert [int(r["embeddings_built"]) for r in trials] == [2, 0, 0]
    repeats = read_csv(sweep / "repeats.csv")
    assert len(repeats) == 2 and {r["frozen_or_full_ft"] for r in repeats} == {"linear_probe"}
    assert all(r["state"] == "COMPLETE" and 0.0 <= float(r["test_value"]) <= 1.0 for r in repeats)
    assert "test/Accuracy" in repeats[0]
    # A randomly initialised encoder is another encoder under another seed: each repeat embeds its own
    # three splits (with pretrained weights they would share the tuning trials' entries).
    assert [int(r["embeddings_built"]) for r in repeats] == [3, 3]
    # Tuning never embedded the test split: train and val of seed 0, then train/val/test of seeds 1 and 2.
    from bench.probes.cache import entries

    splits = sorted(m["split"] for m in entries(cache))
    assert splits == ["test", "test", "train", "train", "train", "val", "val", "val"]


def test_knn_reads_the_cache_on_its_second_trial(compose_cfg, tmp_path, caplog):
    overrides = ("task=synthetic_cls", "protocol=knn", f"embeddings.cache_dir={tmp_path / 'cache'}")
    first = train(compose_cfg(*overrides))
    with caplog.at_level(logging.INFO, logger="bench.probes"):
        second = train(compose_cfg(*overrides, "probe.k=3", "probe.distance=euclidean"))
    assert first["embeddings_built"] == 2 and second["embeddings_built"] == 0
    assert caplog.text.count("embedding cache hit") == 2 and "embedding cache miss" not in caplog.text
    assert 0.0 <= second["value"] <= 1.0


def test_the_segmentation_linear_probe_tests_on_its_test_split(compose_cfg, tmp_path):
    result = train(
        compose_cfg(
            "task=synthetic_seg",
            "protocol=linear_probe",
            "probe.epochs=10",
            "evaluate_test=true",
            f"embeddings.cache_dir={tmp_path / 'cache'}",
        )
    )
    assert result["embeddings_built"] == 3
    assert 0.0 <= result["test_value"] <= 1.0 and result["test_value"] == result["test/mIoU"]
    assert "test/loss" in result and "test/IoU_0" in result


def test_a_probe_on_a_task_it_cannot_serve_is_refused_in_the_dry_run(run_cli, tmp_path):
    result = run_cli("-m", "task=synthetic_seg", "protocol=knn", "hydra.sweeper.dry_run=true")
    assert result.returncode != 0
    assert "protocol=knn cannot serve task 'synthetic_seg': it is a segmentation task" in result.stderr
    (tmp_path / "a_file").write_text("")
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        "protocol=linear_probe",
        f"embeddings.cache_dir={tmp_path / 'a_file' / 'cache'}",
        "hydra.sweeper.dry_run=true",
    )
    assert result.returncode != 0 and "is not writable" in result.stderr


def test_both_probes_score_a_multilabel_task_with_its_own_metrics():
    """Multi-label heads on fixed features (no model): knn's label shares and the sigmoid linear probe, scored
    by TerraTorch's MultiLabelClassificationTask metrics (val/Multilabel_F1_Score, ...)."""
    import itertools
    from types import SimpleNamespace

    import numpy as np
    import torch

    from bench.probes.heads import LinearProbe, Scorer, knn_logits

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(60, 4))
    features = (labels @ rng.normal(size=(4, 16)) + 0.1 * rng.normal(size=(60, 16))).astype(np.float32)
    spec = SimpleNamespace(
        task_class="terratorch.tasks.MultiLabelClassificationTask",
        task_kwargs={"model_args": {"num_classes": 4}, "ignore_index": None},
    )
    scorer = Scorer(spec, "multilabel_classification")
    logits, distance = knn_logits(features[:40], labels[:40], features[40:], 3, "cosine", "multilabel_classification")
    knn = scorer.score(logits, torch.from_numpy(labels[40:]), "val", 0.0)
    assert knn["val/Multilabel_F1_Score"] > 0.6 and distance >= 0.0
    torch.manual_seed(0)
    probe = LinearProbe(features[:40], 4, "multilabel_classification", None)
    later = itertools.count()  # each check scores higher than the last: the last epoch is kept
    probe.fit(features[:40], labels[:40], 0.05, 1e-4, 100, lambda: next(later))
    linear = scorer.score(probe.predict(features[40:]), torch.from_numpy(labels[40:]), "test", 0.0)
    assert linear["test/Multilabel_F1_Score"] > 0.6 and "test/Multilabel_Accuracy" in linear
