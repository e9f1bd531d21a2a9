"""protocol=frozen on cached encoder features (bench.probes.frozen), trained for real on the synthetic tasks
(GeoTIFF tiles, no train augmentation) with prithvi_tiny at random init: the first trial of a sweep builds
the entries and the second reads them (the embeddings_built counter, not timing); a second run of the same
seed reads all three splits and tests on its best checkpoint; the cached-features run equals the end-to-end
frozen run of the same seed exactly; a task with train augmentation, and embeddings.frozen_features=false,
train end to end with the reason logged."""

from __future__ import annotations

import logging

import pytest

from bench.train import train
from tests.helpers import read_csv

pytestmark = pytest.mark.duration(120)

FROZEN = ("protocol=frozen", "model=prithvi_tiny", "model.model_args.backbone_pretrained=false", "task.max_epochs=2")


def test_a_frozen_sweep_builds_the_features_on_its_first_trial_and_reads_them_on_the_second(run_cli, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    result = run_cli(
        "-m",
        "task=synthetic_cls",
        *FROZEN,
        "pruning=none",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=1",
        "mlflow.enabled=false",
        f"embeddings.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = read_csv(sweep / "results.csv")
    assert [r["state"] for r in trials] == ["COMPLETE"] * 2
    assert {r["frozen_or_full_ft"] for r in trials} == {"frozen"}
    # The first trial encoded the training and validation splits; the second, another decoder, read them.
    assert [int(r["embeddings_built"]) for r in trials] == [2, 0]
    repeats = read_csv(sweep / "repeats.csv")
    assert len(repeats) == 1 and repeats[0]["state"] == "COMPLETE" and 0.0 <= float(repeats[0]["test_value"]) <= 1.0
    # A randomly initialised encoder is another encoder under the repeat's seed: it encodes its own three splits.
    assert int(repeats[0]["embeddings_built"]) == 3
    from bench.probes.cache import entries

    assert sorted(m["split"] for m in entries(cache)) == ["test", "train", "train", "val", "val"]
    assert {m["layout"] for m in entries(cache)} == {"frozen"}


def test_cached_features_train_the_same_decoder_as_end_to_end(compose_cfg, tmp_path):
    """The same numbers to within float32 rounding (relative 1e-5): the cached features are the float32 output
    of the same encoder (built from the same seed) on the same samples, the decoder starts from the same
    weights, and the feature pass draws nothing from the global RNG, so the training batches come in the same
    order. Not bit for bit: the encoder pass runs on other batches (the dataset's order, not the shuffled
    one) and float32 matrix products can differ in their last bits with a batch's make-up and the BLAS
    threads' split (seen: test/loss 0.59004939 vs 0.59004927, every other metric equal); a real difference
    (another decoder init, batch order, or feature) moves the loss by far more than that."""
    import torch

    overrides = (*FROZEN, "task=synthetic_seg", "evaluate_test=true", f"embeddings.cache_dir={tmp_path / 'cache'}")
    cached = train(compose_cfg(*overrides, f"output_dir={tmp_path / 'a'}"))
    again = train(compose_cfg(*overrides, f"output_dir={tmp_path / 'b'}"))
    end_to_end = train(compose_cfg(*overrides, "embeddings.frozen_features=false", f"output_dir={tmp_path / 'c'}"))
    # The first run encoded train, val and test; the second (a repeat of the same seed) read all three.
    assert cached.pop("embeddings_built") == 3 and again.pop("embeddings_built") == 0
    assert "embeddings_built" not in end_to_end
    checkpoints = [r.pop("checkpoint") for r in (cached, again, end_to_end)]
    assert all(c.endswith("best.ckpt") for c in checkpoints)  # each tested on its best checkpoint
    assert "test/mIoU" in cached and "test/loss" in cached and set(cached) == set(again) == set(end_to_end)
    for other in (again, end_to_end):
        assert other == {k: pytest.approx(v, rel=1e-5, abs=1e-7) for k, v in cached.items()}
    # The cached-features model keeps the end-to-end module names: its checkpoint loads into the full model.
    keys = [set(torch.load(c, map_location="cpu", weights_only=False)["state_dict"]) for c in checkpoints[::2]]
    assert keys[0] == keys[1] and any(k.startswith("model.encoder.") for k in keys[0])


AUGMENTED = (
    "+task.datamodule.train_transform=[{_target_:albumentations.HorizontalFlip,p:0.5},"
    "{_target_:albumentations.pytorch.transforms.ToTensorV2}]"
)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (AUGMENTED, "the training split is augmented (task.datamodule.train_transform differs"),
        ("embeddings.frozen_features=false", "embeddings.frozen_features=false"),
    ],
)
def test_frozen_trains_end_to_end_when_the_features_are_not_fixed_or_caching_is_off(
    compose_cfg, tmp_path, caplog, override, reason
):
    cache = tmp_path / "cache"
    cfg = compose_cfg("task=synthetic_cls", *FROZEN, "task.max_epochs=1", override, f"embeddings.cache_dir={cache}")
    with caplog.at_level(logging.INFO, logger="bench.probes.frozen"):
        value = train(cfg)
    assert isinstance(value, float) and 0.0 <= value <= 1.0  # no embeddings_built: nothing was cached
    said = [r.getMessage() for r in caplog.records if "features are not cached" in r.getMessage()]
    assert len(said) == 1 and reason in said[0], said
    assert not cache.exists()
