"""`python -m bench` as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def _imported_modules(stderr: str) -> set[str]:
    # `python -X importtime` writes one "import time: ... | <module>" line per import.
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["--cfg", "job", "--resolve", "task=synthetic_cls"]])
def test_cli_introspection_never_imports_torch(args):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bench", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ},
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
    result = run_cli("--cfg", "job", "--resolve", "task=synthetic_cls", "model=resnet50_unet")
    assert result.returncode == 0, result.stderr
    assert "backbone_in_chans: 6" in result.stdout  # ${len:${task.model_bands}} resolved
    assert "metric: val/Accuracy" in result.stdout


@pytest.mark.slow
def test_default_command_trains_and_reports_the_metric(run_cli, tmp_path):
    result = run_cli("task.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"synthetic_seg: best val/mIoU = ([0-9.]+)", result.stdout + result.stderr)
    assert match and 0.0 < float(match.group(1)) <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_multirun_over_tasks_with_hydra_basic_sweeper(run_cli, tmp_path):
    result = run_cli("-m", "task=synthetic_seg,synthetic_cls", "task.max_epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "synthetic_seg: best val/mIoU" in output and "synthetic_cls: best val/Accuracy" in output
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1"]


def test_missing_dataset_fails_fast_without_traceback(run_cli, tmp_path):
    result = run_cli("task=chesapeake", env={"GEO_BENCH_DIR": str(tmp_path / "nowhere")})
    assert result.returncode != 0
    assert "Dataset for task 'chesapeake' not found" in result.stderr
    assert "GEO_BENCH_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_pretrained_weights_fail_plainly(run_cli, tmp_path):
    result = run_cli(
        "model=prithvi",
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"},
    )
    assert result.returncode != 0
    assert "needs pretrained weights ibm-nasa-geospatial/Prithvi-EO-2.0-300M/Prithvi_EO_V2_300M.pt" in result.stderr
    assert "backbone_ckpt_path" in result.stderr
    assert "Traceback" not in result.stderr
