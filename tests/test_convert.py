"""bench.convert on terratorch-iterate's own benchmark configs (tests/data/iterate, unmodified):
the converted preset's dry run has iterate's tasks, search space and trial budget, and the
converter names each known defect instead of copying it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ITERATE = Path(__file__).parent / "data" / "iterate"
CONFIGS = sorted(p.name for p in ITERATE.glob("*.yaml"))


def convert(config: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.convert", str(ITERATE / config), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120)


def iterate_plan(config: str) -> dict:
    raw = yaml.safe_load((ITERATE / config).read_text())
    space = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict) and not {"min", "max"} <= set(value):
                walk(value, f"{prefix}{key}.")
            else:
                space[f"hparams.{prefix}{key}"] = value

    walk(raw.get("optimization_space") or {})
    return {"tasks": [t["name"] for t in raw["tasks"]], "n_trials": raw["n_trials"], "space": space,
            "except": {t["name"]: t.get("optimization_except") or [] for t in raw["tasks"]}}


@pytest.mark.parametrize("config", CONFIGS)
def test_converted_preset_dry_runs_as_iterate_would(config, tmp_path):
    result = convert(config, tmp_path / "conf")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert command.startswith("python -m bench --config-dir ") and " -m experiment=" in command
    expected = iterate_plan(config)

    args = command.split()[3:]  # after `python -m bench`
    dry = subprocess.run([sys.executable, "-m", "bench", *args, "hydra.sweeper.dry_run=true",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "GEO_BENCH_DIR": str(tmp_path / "no-data"), "HF_HUB_OFFLINE": "1"})
    plan = dry.stdout
    # Without the data and offline, the plan is printed, then each missing input is listed once.
    assert "Dry run: nothing launched." in plan, dry.stderr[-3000:]
    n = len(expected["tasks"])
    assert re.search(rf"^{n} cell\(s\): {n * expected['n_trials']} tuning trials", plan, re.M), plan[:500]
    stem = re.sub(r"[^a-z0-9]+", "_", Path(config).stem.lower())
    cells = re.findall(r"^cell (?:task=)?(\S+): (\w+) (\S+)$", plan, re.M)
    # One task is one cell with nothing swept, which the sweeper labels `default`.
    tasks = [f"{stem}_{name}" for name in expected["tasks"]]
    assert [c[0] for c in cells] == (tasks if n > 1 else ["default"])
    assert yaml.safe_load((tmp_path / "conf" / "experiment" / f"{stem}.yaml").read_text())["hydra"]["sweeper"]["cells"] \
        == {"task": tasks}
    for (_, direction, metric) in cells:  # terratorch 1.2.11's names, never the pre-1.0.3 ones
        assert direction == "maximize" and metric in {"val/mIoU", "val/Accuracy_Micro", "val/Multilabel_F1_Score"}
    blocks = re.split(r"^cell ", plan, flags=re.M)[1:]
    for name, block in zip(expected["tasks"], blocks):
        searched = dict(re.findall(r"^  \+?(\S+): (.+?)  \[", block, re.M))
        skipped = {k for k in expected["space"] if k.rsplit(".", 1)[-1] in expected["except"][name]}
        assert set(searched) == set(expected["space"]) - skipped, (name, searched)
        for key, spec in expected["space"].items():
            if key in searched and isinstance(spec, list):
                assert searched[key] == f"choice({', '.join(map(str, spec))})"
            elif key in searched:
                low, high = float(spec["min"]), float(spec["max"])
                assert re.fullmatch(rf"(tag\(log, )?interval\({low!r}, {high!r}\)\)?", searched[key]), searched[key]
                assert searched[key].startswith("tag(log") == bool(spec.get("log"))
    if dry.returncode != 0:
        assert "bench: error: " in dry.stderr and "Traceback" not in dry.stderr, dry.stderr[-3000:]


def test_known_defects_are_reported_not_copied(tmp_path):
    result = convert("geobench_v1_prithvi.yaml", tmp_path / "conf")
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    text = "\n".join(notes)
    assert "metric val/Multiclass_Jaccard_Index renamed val/mIoU" in text
    assert "metric val/Overall_Accuracy renamed val/Accuracy_Micro" in text
    assert re.search(r"tasks\[\d+\] \(forestnet\): num_classes=17 is wrong: the dataset has 12 classes", text)
    assert "/dccstor/" in text and "a path on the authors' cluster" in text  # the checkpoint overlay
    assert "PrithviModelFactory" in text
    forestnet = yaml.safe_load((tmp_path / "conf" / "task" / "geobench_v1_prithvi_forestnet.yaml").read_text())
    assert "num_classes" not in forestnet and forestnet["metric"] == "val/Accuracy_Micro"
    written = "".join(p.read_text() for p in (tmp_path / "conf").rglob("*.yaml"))
    assert "/dccstor/" not in written and "Overall_Accuracy" not in written and "Multiclass_Jaccard_Index" not in written


def test_an_existing_different_file_is_never_overwritten(tmp_path):
    out = tmp_path / "conf"
    assert convert("quick_test.yaml", out).returncode == 0
    mine = out / "search_space" / "quick_test.yaml"
    mine.write_text("# my own edits\n")
    again = convert("quick_test.yaml", out)
    assert again.returncode != 0 and "exist with other contents; nothing was written" in again.stderr
    assert mine.read_text() == "# my own edits\n"
    assert convert("quick_test.yaml", out, "--force").returncode == 0 and mine.read_text() != "# my own edits\n"


def test_a_config_that_is_not_iterates_gets_a_sentence(tmp_path):
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("n_trials: 3\n")
    result = subprocess.run([sys.executable, "-m", "bench.convert", str(bogus)], capture_output=True, text=True)
    assert result.returncode != 0 and "has no `tasks:` list" in result.stderr and "Traceback" not in result.stderr
