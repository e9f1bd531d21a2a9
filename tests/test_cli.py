"""`python -m bench` as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.duration(60)


def _imported_modules(stderr: str) -> set[str]:
    # `python -X importtime` writes one "import time: ... | <module>" line per import.
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["--cfg", "job", "--resolve", "task=synthetic_cls"]])
def test_cli_introspection_never_imports_torch(args):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    modules = _imported_modules(result.stderr)
    assert "hydra" in modules  # the import log was read
    assert not {"torch", "terratorch", "lightning"} & modules


def test_help_lists_every_config_group(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    for group in ("model", "task", "search_space", "launcher", "experiment"):
        assert re.search(rf"^{group}: ", result.stdout, re.M), result.stdout


def test_resolved_job_config_shows_the_merged_inputs(run_cli):
    result = run_cli("--cfg", "job", "--resolve", "task=synthetic_cls", "model=resnet50")
    assert result.returncode == 0, result.stderr
    assert "backbone_in_chans: 6" in result.stdout  # ${len:${task.model_bands}} resolved
    assert "metric: val/Accuracy" in result.stdout


@pytest.mark.slow
def test_default_command_trains_reports_the_metric_and_tracks_the_run(run_cli, tmp_path):
    from mlflow import MlflowClient

    from tests.helpers import tree

    result = run_cli("task.max_epochs=2", "mlflow.save_models=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"synthetic_seg: best val/mIoU = ([0-9.]+)", result.stdout + result.stderr)
    assert match and 0.0 < float(match.group(1)) <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    # Tracked on the embedded default store, with its config and (save_models) its best checkpoint.
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    # Only its owner may read the store (the served one's API asks for credentials).
    assert (tmp_path / "multirun_outputs" / "mlflow.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "multirun_outputs" / "mlartifacts").stat().st_mode & 0o777 == 0o700
    (run,) = tree(client, "bench")["run"]
    assert run.info.status == "FINISHED"
    assert {"config.yaml", "checkpoints"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    assert len(client.get_metric_history(run.info.run_id, "val/mIoU")) == 2  # one point per epoch


def test_missing_dataset_fails_fast_without_traceback(run_cli, tmp_path):
    result = run_cli("task=chesapeake", env={"GEO_BENCH_DIR": str(tmp_path / "nowhere")})
    assert result.returncode != 0
    assert "Dataset for task 'chesapeake' not found" in result.stderr
    assert "GEO_BENCH_DIR" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("grammar", ["interval(1e-3)", "tag(log, interval(0, 1))", "choice("])
def test_malformed_search_space_fails_before_any_job(run_cli, tmp_path, grammar):
    # A user's own search-space option, added with --config-dir as a user would.
    (tmp_path / "extra" / "search_space").mkdir(parents=True)
    (tmp_path / "extra" / "search_space" / "mine.yaml").write_text(
        f"hparams.lr: '{grammar}'\nhparams.batch_size: choice(8, 16)\n"
    )
    result = run_cli(
        "-m", "--config-dir", str(tmp_path / "extra"), "search_space=mine", f"hydra.sweep.dir={tmp_path / 'sweep'}"
    )
    assert result.returncode != 0
    assert f"search space entry 'hparams.lr={grammar}' is malformed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sweep").exists()


def test_dry_run_shows_the_plan_without_importing_torch(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "bench",
            "-m",
            "task=synthetic_seg,synthetic_cls",
            "model=prithvi_tiny,prithvi",
            "model.model_args.backbone_pretrained=false",
            "hydra.sweeper.dry_run=true",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 cell(s): 32 tuning trials" in result.stdout
    assert "cell task=synthetic_cls,model=prithvi: maximize val/Accuracy" in result.stdout
    assert "hparams.model_args.decoder_channels: choice([512,256,128,64], [256,128,64,32])" in result.stdout
    assert not {"torch", "terratorch", "lightning"} & _imported_modules(result.stderr)
    assert not (tmp_path / "sweep").exists()


def test_the_demo_experiment_declares_its_two_cells_and_their_protocol(run_cli, tmp_path):
    """`make demo` is `python -m bench -m experiment=demo`: the preset alone gives the matrix."""
    result = run_cli("-m", "experiment=demo", "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 cell(s): 8 tuning trials + 2 repeats each (seeds [1, 2])" in result.stdout
    assert re.findall(r"^cell (\S+): (\w+) (\S+)$", result.stdout, re.M) == [
        ("task=synthetic_seg,model=prithvi_tiny", "maximize", "val/mIoU"),
        ("task=synthetic_cls,model=prithvi_tiny", "maximize", "val/Accuracy"),
    ]
    # Its own search space, one that suits a randomly initialised model (not the pretrained default).
    assert "hparams.lr: tag(log, interval(1e-5, 3e-3))" in result.stdout


@pytest.mark.parametrize(
    "override, expected",
    [
        ("hparams.batch_size=0", "bench: error: hparams.batch_size=0 is not possible"),
        ("task.max_epochs=0", "bench: error: task.max_epochs=0 is not possible"),
        ("task.max_epochs=-1", "bench: error: task.max_epochs=-1 is not possible"),
        ("task.patience=0", "bench: error: task.patience=0 is not possible"),
        # A value only some trials would draw: refused up front, not by failing those trials.
        (
            "hparams.batch_size=choice(8,0)",
            "the search space gives hparams.batch_size the value 0 (choice(8,0)), which "
            "no trial can use: hparams.batch_size=0 is not possible",
        ),
    ],
)
def test_impossible_values_fail_before_any_job(run_cli, tmp_path, override, expected):
    result = run_cli("-m", override, "search_space=none", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "sweep").exists()


def test_unknown_task_fails_before_any_job(run_cli, tmp_path):
    result = run_cli("-m", "task=synthetic_seg,eurosatt", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode != 0
    assert "eurosatt" in result.stderr and "synthetic_seg" in result.stderr  # Hydra lists the options
    assert not (tmp_path / "sweep").exists()


def test_unreachable_pretrained_weights_fail_plainly(run_cli, tmp_path):
    result = run_cli(
        "model=prithvi",
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"},
    )
    assert result.returncode != 0
    assert "needs pretrained weights ibm-nasa-geospatial/Prithvi-EO-2.0-300M/Prithvi_EO_V2_300M.pt" in result.stderr
    assert "backbone_ckpt_path" in result.stderr
    assert "Traceback" not in result.stderr
