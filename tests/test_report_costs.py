"""The report's compute-cost table (costs.csv and the page's section): sums per model x task,
tuning and repeats apart, from the gpu_hours / cpu_hours columns of results.csv and repeats.csv;
unknown costs empty, never zero; no table when no input recorded any cost."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.build import main
from bench.report.costs import COLUMNS, cost_matrix, cost_table
from tests.helpers import UNACCOUNTED_CELLS, read_csv, write_cost_sweep

# model x dataset -> tuning_trials, then (tuning, repeats, total) GPU-hours (CPU-hours are 8 x);
# None: unknown. From tests/helpers.COST_CELLS and UNACCOUNTED_CELLS.
EXPECTED = {
    ("baseline", "cropland"): (2, (None, None, None)),  # swept before costs were accounted
    ("large", "burns"): (2, (0.5, 1.5, 2.0)),  # the RUNNING trial counts as run; its cost is not known yet
    ("large", "cropland"): (3, (0.5 + 0.25 + 1.0, 1.5, 3.25)),  # FAIL and PRUNED were spent; WAITING never ran
    ("leader", "cropland"): (None, (None, None, None)),  # a leaderboard CSV's scores: no cost at all
    ("small", "burns"): (1, (0.0625, 0.25 + 0.25 + 0.1, 0.6625)),  # the failed seed was spent too
    ("small", "cropland"): (2, (0.25, 0.5, 0.75)),
}


def _leaderboard(path: Path) -> Path:
    rows = [
        {
            "dataset": "cropland",
            "Metric": "Multiclass_Jaccard_Index",
            "Seed": seed,
            "test metric": 0.6 + seed / 100,
            "backbone": "leader",
        }
        for seed in range(3)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _report(tmp_path: Path, *inputs: Path, capsys) -> tuple[Path, str, str]:
    out = tmp_path / "report"
    main([*map(str, inputs), "--out", str(out), "--bootstrap", "20", "--no-mlflow"])
    captured = capsys.readouterr()
    return out, captured.out, captured.err


def _number(text: str) -> float | None:
    return float(text) if text != "" else None


def test_costs_csv_sums_tuning_and_repeats_per_model_and_task(tmp_path, capsys):
    accounted = write_cost_sweep(tmp_path / "accounted")
    unaccounted = write_cost_sweep(tmp_path / "unaccounted", UNACCOUNTED_CELLS, accounted=False)
    leader = _leaderboard(tmp_path / "leader.csv")
    out, stdout, stderr = _report(tmp_path, accounted, unaccounted, leader, capsys=capsys)

    rows = read_csv(out / "costs.csv")
    assert list(rows[0]) == COLUMNS
    assert [(r["model"], r["dataset"]) for r in rows] == sorted(EXPECTED)  # one row per model x dataset, sorted
    # the same model x dataset pairs as datasets.csv
    assert {(r["model"], r["dataset"]) for r in read_csv(out / "datasets.csv")} == set(EXPECTED)
    for row in rows:
        trials, (tuning, repeats, total) = EXPECTED[row["model"], row["dataset"]]
        assert row["tuning_trials"] == ("" if trials is None else str(trials)), row
        for unit, scale in (("gpu", 1), ("cpu", 8)):
            got = [_number(row[f"{phase}{unit}_hours"]) for phase in ("tuning_", "repeats_", "")]
            want = [None if v is None else scale * v for v in (tuning, repeats, total)]
            assert got == pytest.approx(want), (row, unit)  # None (an empty cell) only where unknown, never 0
    assert "costs.csv" in stdout.splitlines()[-1]
    assert "no cost table" not in stderr


def test_no_input_with_costs_gives_no_cost_table(tmp_path, capsys):
    unaccounted = write_cost_sweep(tmp_path / "unaccounted", UNACCOUNTED_CELLS, accounted=False)
    out, stdout, stderr = _report(tmp_path, unaccounted, _leaderboard(tmp_path / "leader.csv"), capsys=capsys)
    assert not (out / "costs.csv").exists()
    assert "Compute cost" not in (out / "report.html").read_text()
    assert stderr.count("no cost table") == 1  # said once
    assert "costs.csv" not in stdout


def test_the_pages_matrix_falls_back_to_cpu_hours_when_no_trial_held_a_gpu():
    costs = pd.DataFrame(
        {
            "model": ["a", "a", "b"],
            "dataset": ["x", "y", "x"],
            "gpu_hours": [0.0, np.nan, 0.0],
            "cpu_hours": [2.0, np.nan, 0.5],
        }
    )
    caption, matrix = cost_matrix(costs)
    assert caption.startswith("Compute cost (CPU-hours per model x task")
    assert list(matrix.columns) == ["model", "x", "y", "total"]
    a, b = matrix.set_index("model").loc["a"], matrix.set_index("model").loc["b"]
    assert (a["x"], a["total"], b["x"], b["total"]) == (2.0, 2.0, 0.5, 0.5)
    assert math.isnan(a["y"]) and math.isnan(b["y"])  # unknown (b never ran y) stays empty, not 0

    costs["gpu_hours"] = [1.5, np.nan, 0.0]
    caption, matrix = cost_matrix(costs)
    assert caption.startswith("Compute cost (GPU-hours per model x task")
    assert matrix.set_index("model").loc["a", "total"] == 1.5


def test_a_cell_tuned_without_a_test_score_yet_still_has_its_cost():
    tuning = pd.DataFrame(
        {
            "cell": "task=t,model=m",
            "task": "t",
            "model": "m",
            "state": ["COMPLETE", "RUNNING"],
            "gpu_hours": [0.5, np.nan],
            "cpu_hours": [4.0, np.nan],
        }
    )
    table = cost_table(tuning, pd.DataFrame(), pd.DataFrame({"model": ["other"], "dataset": ["t"]}))
    rows = table.set_index(["model", "dataset"])
    mine = rows.loc[("m", "t")]
    assert mine[["tuning_trials", "tuning_gpu_hours", "gpu_hours", "cpu_hours"]].tolist() == [2, 0.5, 0.5, 4.0]
    assert pd.isna(mine["repeats_gpu_hours"])  # no repeat has run: unknown, not 0
    assert rows.loc[("other", "t")].isna().all()  # scored elsewhere (a leaderboard CSV): nothing known
