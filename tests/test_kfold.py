"""k-fold tuning (hydra.sweeper.folds): the folds, the running-mean pruning reports, the refusals,
and a real sweep on the synthetic classification task's GeoTIFF files."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.duration(120)


def _ids(n_per_class: dict[int, int]) -> tuple[list[str], list[int]]:
    ids, labels = [], []
    for label, n in n_per_class.items():
        for i in range(n):
            ids.append(f"/data/train/class_{label}/tile_{label}_{i:03d}.tif")
            labels.append(label)
    return ids, labels


def test_folds_are_disjoint_cover_the_set_are_stratified_and_do_not_depend_on_the_listing_order():
    from bench.folds import fold_indices

    ids, labels = _ids({0: 11, 1: 11, 2: 10})
    folds = fold_indices(ids, labels, 3, "synthetic_cls")
    assert sorted(i for f in folds for i in f) == list(range(len(ids)))  # disjoint, and cover the set
    for label, total in Counter(labels).items():
        per_fold = [sum(labels[i] == label for i in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == total  # within one sample
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    # The same files make the same folds, whatever order they are listed in, and wherever they lie.
    order = list(range(len(ids)))
    random.Random(3).shuffle(order)
    moved = [ids[i].replace("/data/", "/elsewhere/deeper/") for i in order]
    refolded = fold_indices(moved, [labels[i] for i in order], 3, "synthetic_cls")
    as_files = lambda fs, names: sorted(sorted(names[i].rpartition("/train/")[2] for i in f) for f in fs)  # noqa: E731
    assert as_files(refolded, moved) == as_files(folds, ids)
    # Another seed (another task) gives other folds; no labels: plain folds, sizes within one.
    assert as_files(fold_indices(ids, labels, 3, "other"), ids) != as_files(folds, ids)
    plain = fold_indices(ids, None, 4, "synthetic_cls")
    assert sorted(i for f in plain for i in f) == list(range(len(ids))) and {len(f) for f in plain} == {8}


def test_fold_counts_the_training_set_cannot_give_are_refused_with_a_sentence():
    from bench.errors import ConfigError
    from bench.folds import check_folds

    ids, labels = _ids({0: 5, 1: 3})
    check_folds("t", 3, len(ids), labels)
    with pytest.raises(
        ConfigError, match=r"task 't': 4 folds need at least 4 training samples of every class, and class 1 has 3"
    ):
        check_folds("t", 4, len(ids), labels)
    with pytest.raises(ConfigError, match="at least 2 folds, not 1"):
        check_folds("t", 1, len(ids), labels)
    with pytest.raises(ConfigError, match="9 folds need at least 9 training samples, and it has 8"):
        check_folds("t", 9, len(ids), None)


def test_pruning_sees_the_running_mean_over_the_folds_at_steps_that_mean_the_same_in_every_trial():
    import optuna

    from hydra_plugins.bench_sweeper.api import FoldReporter, fold_outputs, report_and_maybe_prune

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    report_and_maybe_prune(FoldReporter(trial, 0, [], 5), 0.4, 0)
    report_and_maybe_prune(FoldReporter(trial, 0, [], 5), 0.6, 1)
    report_and_maybe_prune(FoldReporter(trial, 1, [0.6], 5), 0.2, 0)  # fold 1's first epoch
    report_and_maybe_prune(FoldReporter(trial, 2, [0.6, 0.4], 5), 0.8, 3)
    assert study.trials[0].intermediate_values == pytest.approx({0: 0.4, 1: 0.6, 5: 0.4, 13: 0.6})
    assert fold_outputs([0.5, 0.7, 0.6]) == pytest.approx(
        {"value": 0.6, "fold_0": 0.5, "fold_1": 0.7, "fold_2": 0.6, "fold_std": (0.02 / 3) ** 0.5}
    )
    # A pruner that stops at once: the reporter raises as the trial itself would.
    pruned = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.9))
    with pytest.raises(optuna.TrialPruned):
        report_and_maybe_prune(FoldReporter(pruned.ask(), 1, [0.5], 3), 0.5, 0)


def test_a_resume_with_another_fold_count_is_another_experiment():
    from hydra_plugins.bench_sweeper._fingerprint import differences

    assert differences({"metric": "m"}, {"metric": "m", "folds": 3}) == ["folds: null -> 3"]
    assert differences({"metric": "m"}, {"metric": "m"}) == []  # sweeps from before k-fold: unchanged


def test_one_fold_is_refused_and_the_dry_run_says_what_k_folds_cost(run_cli, tmp_path):
    one = run_cli(
        "-m", "task=synthetic_cls", "model=prithvi_tiny", "hydra.sweeper.folds=1", "hydra.sweeper.dry_run=true"
    )
    assert one.returncode != 0
    assert "hydra.sweeper.folds=1 is not possible: k-fold tuning needs at least 2 folds" in one.stderr
    dry = run_cli(
        "-m", "task=synthetic_cls", "model=prithvi_tiny", "hydra.sweeper.folds=4", "hydra.sweeper.dry_run=true"
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "k-fold tuning: 4 folds, 4 trainings per tuning trial (4x a single split's cost" in dry.stdout


def test_a_k_fold_sweep_on_real_files(run_cli, tmp_path, data_dir):
    from tests.helpers import read_csv, studies

    sweep = tmp_path / "sweep"
    cheap = [
        "task=synthetic_cls",
        "model=prithvi_tiny",
        "model.model_args.backbone_pretrained=false",
        "search_space=demo",  # batch sizes a fold's 21 training samples can fill
        "task.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.sampler.seed=1",
    ]
    result = run_cli(
        "-m",
        *cheap,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=1",
        "hydra.sweeper.folds=3",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "results.csv")
    assert len(rows) == 2 and {r["state"] for r in rows} == {"COMPLETE"}
    root = Path(data_dir).resolve() / "synthetic_cls_v1"
    train_files = {str(p.resolve()) for p in (root / "train").rglob("*.tif")}
    study = studies(sweep)["task=synthetic_cls,model=prithvi_tiny"]
    chosen = []
    for row in rows:
        folds = [float(row[f"fold_{i}"]) for i in range(3)]
        assert "fold_3" not in row and float(row["value"]) == pytest.approx(sum(folds) / 3)
        mean = sum(folds) / 3
        # Pruning saw the running mean, one step per fold's epoch; the live view counted all folds' epochs.
        trial = study.trials[int(row["trial"])]
        assert trial.intermediate_values == pytest.approx({0: folds[0], 1: (folds[0] + folds[1]) / 2, 2: mean})
        assert trial.user_attrs["progress"]["epoch"] == 3 and trial.user_attrs["progress"]["max_epochs"] == 3
        assert float(row["fold_std"]) == pytest.approx((sum((v - mean) ** 2 for v in folds) / 3) ** 0.5)
        samples = [json.loads((Path(row["job_dir"]) / f"fold_{i}" / "samples.json").read_text()) for i in range(3)]
        held = [set(s["validation"]) for s in samples]
        assert set().union(*held) == train_files and sum(map(len, held)) == len(train_files)  # disjoint, cover
        for s, h in zip(samples, held):
            assert set(s["train"]) == train_files - h  # trained on the rest of the training split
            assert all("/train/" in f and "/test/" not in f and "/val/" not in f for f in s["train"] + s["validation"])
            per_class = Counter(Path(f).parent.name for f in h)
            assert max(per_class.values()) - min(per_class.values()) <= 1  # stratified
        chosen.append([sorted(h) for h in held])
    assert chosen[0] == chosen[1]  # the same folds for every trial (and model: the seed is the task)
    # The repeat retrains on the whole training set, never told about folds, and tests.
    repeats = read_csv(sweep / "repeats.csv")
    assert len(repeats) == 1 and repeats[0]["state"] == "COMPLETE" and repeats[0]["test_value"]
    assert not any(k.startswith("fold_") for k in repeats[0])
    repeat_dir = Path(repeats[0]["job_dir"])
    assert not list(repeat_dir.glob("fold_*")) and "folds" not in (repeat_dir / ".hydra" / "config.yaml").read_text()

    # More folds than the smallest class has training samples: the trial says so before training.
    too_many = run_cli(
        "-m", *cheap, "hydra.sweeper.n_trials=1", "hydra.sweeper.folds=20", f"hydra.sweep.dir={tmp_path}/many"
    )
    assert too_many.returncode != 0
    said = too_many.stdout + too_many.stderr + (tmp_path / "many" / "results.csv").read_text()
    assert "20 folds need at least 20 training samples of every class, and class 2 has 10 (of 32)" in said
    assert not list((tmp_path / "many").glob("*/fold_*/metrics"))  # nothing trained


@pytest.mark.slow
def test_k_fold_on_a_task_that_holds_its_validation_out_of_training_never_reads_its_test_files(run_cli, tmp_path):
    """HLS burn scars ships training and validation folders; bench tests on the validation folder and
    holds a validation set out of training (task.validation_from_train). k-fold tuning draws every fold,
    training and held-out samples alike, from the training folder only: the test files (the dataset's
    validation folder) are never read while tuning. The repeat then holds out its validation sample as
    fine-tuning does, and tests on the validation folder."""
    from tests.formats.hls import WRITERS
    from tests.helpers import read_csv

    root = WRITERS["hls_burn_scars"](tmp_path / "burn")
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=hls_burn_scars",
        "model=prithvi_tiny",
        "model.model_args.backbone_pretrained=false",
        "task.max_epochs=1",
        "mlflow.enabled=false",
        "trainer.num_sanity_val_steps=0",
        "task.image_size=64",
        "task.datamodule.num_workers=0",
        "hparams.batch_size=2",
        "search_space=none",
        "hparams.lr=interval(0.0001,0.001)",  # one searched key: one tuning trial
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.repeats=1",
        "hydra.sweeper.folds=2",
        f"hydra.sweep.dir={sweep}",
        env={"HLS_BURN_SCARS_DIR": str(root)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_csv(sweep / "results.csv")
    assert row["state"] == "COMPLETE" and row["fold_0"] and row["fold_1"]
    training = {str(p.resolve()) for p in (root / "training").glob("*_merged.tif")}
    test_files = {str(p.resolve()) for p in (root / "validation").glob("*_merged.tif")}
    assert training and test_files and not training & test_files
    samples = [json.loads((Path(row["job_dir"]) / f"fold_{i}" / "samples.json").read_text()) for i in range(2)]
    read = {str(Path(f).resolve()) for s in samples for f in s["train"] + s["validation"]}
    assert read == training and not read & test_files  # every training sample, no test sample
    assert set(samples[0]["validation"]).isdisjoint(samples[1]["validation"])
    (repeat,) = read_csv(sweep / "repeats.csv")
    assert repeat["state"] == "COMPLETE" and float(repeat["val_value"]) != float(repeat["test_value"])
    assert "validation: 1 of the 5 training samples held out" in (Path(repeat["job_dir"]) / "bench.log").read_text()
