"""Validation is never the test split, for every task (bench.splits, bench.data.heldout,
bench.evaluation): refused from the config before launch, from the samples the datamodule
resolves before training, and from a repeat's metrics after its first test; and the HLS tasks,
whose datasets ship no test split, hold their validation samples out of training."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest
from omegaconf import open_dict

from bench.errors import SplitOverlapError
from bench.preflight import check_cell, preflight
from bench.splits import TESTS_ON_VALIDATION, HeldOut
from tests.formats.hls import ENV_VARS, WRITERS
from tests.helpers import read_csv

pytestmark = pytest.mark.duration(90)

SAME_FILES = "its validation and test splits are the same files"
REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=prithvi_tiny",
    "task.max_epochs=1",
    "mlflow.enabled=false",
    "search_space=none",
    "trainer.num_sanity_val_steps=0",
]


def multirun(cfg):
    """The cell config the sweeper's driver checks: composed for a multirun."""
    from hydra.types import RunMode

    with open_dict(cfg):
        cfg.hydra = {"mode": RunMode.MULTIRUN}
    return cfg


def test_a_cell_whose_test_files_are_its_validation_files_is_refused_before_anything_is_created(run_cli, tmp_path):
    same = "task.datamodule.test_data_root=${task.datamodule.val_data_root}"
    dry = run_cli("-m", "task=synthetic_seg", same, "hydra.sweeper.dry_run=true")
    assert dry.returncode != 0 and SAME_FILES in dry.stderr, dry.stderr[-2000:]
    assert "Traceback" not in dry.stderr
    sweep = tmp_path / "sweep"
    real = run_cli("-m", f"hydra.sweep.dir={sweep}", "task=synthetic_seg", same, "hydra.sweeper.repeats=1")
    assert real.returncode != 0 and SAME_FILES in real.stderr
    assert not sweep.exists()
    # The same folder written another way is the same folder.
    other = run_cli(
        "-m",
        "task=synthetic_seg",
        "task.datamodule.test_data_root=${task.dataset.root}/val/../val/",
        "hydra.sweeper.dry_run=true",
    )
    assert other.returncode != 0 and SAME_FILES in other.stderr


def test_evaluate_test_in_a_sweep_is_refused_before_anything_is_created(run_cli, tmp_path):
    dry = run_cli("-m", "task=synthetic_seg", "evaluate_test=true", "hydra.sweeper.dry_run=true")
    assert dry.returncode != 0 and "evaluate_test=true in a sweep" in dry.stderr
    sweep = tmp_path / "sweep"
    real = run_cli("-m", f"hydra.sweep.dir={sweep}", "task=synthetic_seg", "evaluate_test=true")
    assert real.returncode != 0 and "evaluate_test=true in a sweep" in real.stderr
    assert not sweep.exists()


def test_a_single_run_is_refused_only_when_it_tests(compose_cfg):
    same = "task.datamodule.test_data_root=${task.datamodule.val_data_root}"
    preflight(compose_cfg("task=synthetic_seg", same))  # tuning alone never reads the test split
    with pytest.raises(SplitOverlapError, match=SAME_FILES):
        preflight(compose_cfg("task=synthetic_seg", same, "evaluate_test=true"))


@pytest.mark.parametrize("task", ["hls_burn_scars", "crop_classification"])
def test_a_datamodule_that_tests_on_its_validation_split_must_hold_validation_out(
    task, compose_cfg, tmp_path, monkeypatch
):
    monkeypatch.setenv(ENV_VARS[task], str(WRITERS[task](tmp_path / task)))
    check_cell(multirun(compose_cfg(f"task={task}")))  # as the catalog has it: held out of training
    with pytest.raises(SplitOverlapError, match="tests on the dataset's validation split"):
        check_cell(multirun(compose_cfg(f"task={task}", "task.validation_from_train=null")))


def test_the_list_of_datamodules_that_test_on_validation_is_terratorchs():
    """Every TerraTorch datamodule whose setup builds test_dataset from split="val" is listed, and
    nothing else: read from the installed TerraTorch's source."""
    import terratorch.datamodules as modules

    found = set()
    for name, cls in vars(modules).items():
        if not (inspect.isclass(cls) and hasattr(cls, "setup")):
            continue
        try:
            source = inspect.getsource(cls.setup)
        except (OSError, TypeError):
            continue
        if re.search(r'self\.test_dataset\s*=\s*self\.dataset_class\(\s*split\s*=\s*"val"', source):
            found.add(name)
    assert found == set(TESTS_ON_VALIDATION)


def test_split_indices_hold_a_fixed_share_out_by_file_name():
    from bench.data.heldout import split_indices

    names = [f"chip_{i:03d}_merged.tif" for i in range(20)]
    kept, held = split_indices([f"/data/a/{n}" for n in names], HeldOut(0.2, 0))
    assert len(held) == 4 and sorted(kept + held) == list(range(20))
    # Another order, another root: the same files are held out.
    moved = [f"/mnt/b/{n}" for n in reversed(names)]
    _, held_moved = split_indices(moved, HeldOut(0.2, 0))
    assert {names[i] for i in held} == {Path(moved[i]).name for i in held_moved}
    assert split_indices([f"/d/{n}" for n in names], HeldOut(0.2, 1))[1] != held  # the seed chooses
    assert split_indices(["/d/a", "/d/b"], HeldOut(0.01, 0)) == ([0], [1]) or split_indices(
        ["/d/a", "/d/b"], HeldOut(0.01, 0)
    ) == ([1], [0])  # at least one, never all


@pytest.mark.slow
@pytest.mark.parametrize("task", ["hls_burn_scars", "crop_classification"])
def test_the_hls_tasks_validate_on_training_samples_and_test_on_the_validation_split(
    task, compose_cfg, tmp_path, monkeypatch
):
    from bench.data.heldout import build_datamodule, sample_ids

    root = WRITERS[task](tmp_path / task)
    monkeypatch.setenv(ENV_VARS[task], str(root))
    spec = preflight(compose_cfg(f"task={task}", "task.datamodule.num_workers=0"))
    training, validation = (
        sorted(str(p.resolve()) for p in (root / folder).glob("*_merged.tif") if not p.name.startswith("._"))
        for folder in (
            ("training", "validation") if task == "hls_burn_scars" else ("training_chips", "validation_chips")
        )
    )
    seen = []
    for _ in range(2):  # the same samples every time
        datamodule = build_datamodule(spec, batch_size=2)
        datamodule.setup("fit")
        datamodule.setup("test")
        train, val, test = (sample_ids(getattr(datamodule, f"{s}_dataset")) for s in ("train", "val", "test"))
        seen.append(val)
    assert seen[0] == seen[1] and len(val) == 1 and len(train) == 4
    assert set(val) | set(train) == set(training) and not set(val) & set(train)
    assert sorted(test) == validation  # the dataset's validation split, which nothing else reads
    # Validation samples are read as validation samples: no random flips.
    assert datamodule.val_dataset.dataset.transform is not datamodule.train_dataset.dataset.transform


@pytest.mark.slow
def test_a_repeat_of_hls_burn_scars_scores_test_and_validation_on_different_samples(run_cli, tmp_path):
    """The reproduction: TerraTorch tests burn scars on its validation split, so every seed gave
    val_value == test_value. Now validation is held out of training."""
    root = WRITERS["hls_burn_scars"](tmp_path / "burn")
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        f"hydra.sweep.dir={sweep}",
        "task=hls_burn_scars",
        *TINY,
        "hydra.sweeper.n_trials=0",
        "hydra.sweeper.repeats=2",
        "task.image_size=64",
        "task.datamodule.num_workers=0",
        "hparams.batch_size=2",
        env={"HLS_BURN_SCARS_DIR": str(root)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "repeats.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert all(float(r["val_value"]) != float(r["test_value"]) for r in rows), rows
    log = (Path(rows[0]["job_dir"]) / "bench.log").read_text()
    assert "validation: 1 of the 5 training samples held out" in log


@pytest.mark.slow
def test_a_cells_first_tuning_trial_compares_the_samples_its_datamodule_resolves(tmp_path, data_dir):
    """A datamodule that tests on its validation files under a name no list knows: the first tuning
    trial of a cell (its number 0) finds it before training, so the cell stops before its budget
    is spent; later trials do not look again. A real study and trial, as the sweeper hands them."""
    import optuna
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from bench.paths import CONFIG_DIR
    from bench.train import train
    from hydra_plugins.bench_sweeper._private_apis import trial_id
    from hydra_plugins.bench_sweeper._studies import open_storage

    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="cell", storage=open_storage(journal), direction="maximize")

    def tuning_trial(number: int):
        trial = study.ask()
        assert trial.number == number
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "task=synthetic_seg",
                    *TINY,
                    f"data_dir={data_dir}",
                    f"output_dir={tmp_path / str(number)}",
                    "task.datamodule._target_=tests.split_datamodules.ValidationAsTest",
                    "hydra.mode=MULTIRUN",
                    f"trial={{study: cell, storage: '{journal}', id: {trial_id(trial)}, number: {number}, phase: tune}}",
                ],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as a job sees its config
        return cfg

    try:
        with pytest.raises(SplitOverlapError, match="resolves the same 16 samples for validation and test"):
            train(tuning_trial(0))
        assert not list((tmp_path / "0").glob("checkpoints/*.ckpt"))  # before any epoch
        value = train(tuning_trial(1))  # a later trial trains without looking again
        assert value == value
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.slow
def test_a_test_split_that_is_a_copy_of_the_validation_split_is_refused_after_testing(compose_cfg, tmp_path):
    """Files that differ only in where they lie: only the metrics can tell. The best checkpoint scores
    every metric, the loss included, equal on both, so the run that tested (a repeat, here a single
    run with evaluate_test) fails with the sentence, which stops a sweep cell's repeats."""
    from bench.data.synthetic import ensure_synthetic_dataset
    from bench.train import train

    root = tmp_path / "synthetic_seg_v1"
    ensure_synthetic_dataset(root=str(root), kind="segmentation")
    shutil.copytree(root / "val", tmp_path / "copy_of_val")
    cfg = compose_cfg(
        "task=synthetic_seg",
        *TINY,
        "evaluate_test=true",
        f"task.dataset.root={root}",
        f"task.datamodule.test_data_root={tmp_path / 'copy_of_val'}",
        "task.datamodule.num_workers=0",
    )
    with pytest.raises(SplitOverlapError, match="scores exactly the same on the validation and the test split"):
        train(cfg)
    # The same run on the dataset's own test split tests as usual.
    assert (
        train(compose_cfg("task=synthetic_seg", *TINY, "evaluate_test=true", f"task.dataset.root={root}"))["test_value"]
        >= 0
    )
