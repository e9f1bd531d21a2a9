"""Compute-aware sweeps on the stub app: GPU/CPU-hours per trial, budgets, convergence, warm starts.

The stub runs in the driver (Hydra's basic launcher), which grants each trial what
hydra.sweeper.accounting.local_gpus/local_cpus say; the Ray and SLURM grants are tested in
test_ray.py and test_slurm.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import read_csv, run_stub

pytestmark = pytest.mark.duration(50)

GRANT = ["hydra.sweeper.accounting.local_gpus=1", "hydra.sweeper.accounting.local_cpus=3"]


def _hours(rows: list[dict], key: str = "gpu_hours") -> float:
    return sum(float(r[key]) for r in rows if r[key])


def test_each_trial_records_its_grant_times_its_run_time(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=1", "sleep=0.3", *GRANT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "results.csv")
    for row in rows:
        timing = json.loads((Path(row["job_dir"]) / "timing.json").read_text())
        ran_s = timing["end"] - timing["start"]  # measured inside the job
        # 1 GPU and 3 CPUs for the job's run time, which holds the job's own measure
        assert ran_s <= float(row["gpu_hours"]) * 3600 <= float(row["duration_s"]) + 0.01
        assert float(row["cpu_hours"]) == pytest.approx(3 * float(row["gpu_hours"]), rel=1e-6)
    repeats = read_csv(tmp_path / "repeats.csv")
    assert all(float(r["gpu_hours"]) * 3600 >= 0.3 for r in repeats)
    best = {r["cell"]: r for r in read_csv(tmp_path / "best.csv")}
    for cell, row in best.items():  # per cell: its tuning trials and its repeats
        mine = [r for r in rows if r["cell"] == cell] + [r for r in repeats if r["cell"] == cell]
        assert float(row["gpu_hours"]) == pytest.approx(_hours(mine), rel=1e-6)
        assert float(row["cpu_hours"]) == pytest.approx(_hours(mine, "cpu_hours"), rel=1e-6)
    assert " GPU-h " in result.stdout and "CPU-hours spent" in result.stdout  # the progress view


def test_a_budget_stops_new_trials_exits_cleanly_and_resumes_with_a_larger_one(tmp_path):
    # ~0.35 s per trial at 1 GPU: 0.0004 GPU-hours (1.44 s) buys about 4 of the 8 trials.
    args = ["task=a,b", "hydra.sweeper.n_trials=4", "sleep=0.3", *GRANT]
    first = run_stub(tmp_path, *args, "hydra.sweeper.budget.gpu_hours=0.0004")
    assert first.returncode == 0, first.stderr[-3000:]  # a budget reached is a planned end
    rows = read_csv(tmp_path / "results.csv")
    # Usually about 4 trials; on a loaded machine one trial's overhead can spend the whole budget.
    assert 1 <= len(rows) < 8
    spent, one_trial = _hours(rows), max(float(r["gpu_hours"]) for r in rows)
    assert spent <= 0.0004 + one_trial  # it stopped at its allocation, not after the next trial
    assert "Budget reached" in first.stdout and "budget.gpu_hours=0.0004 reached" in first.stdout
    assert "Cells left short: task=a (" in first.stdout and "task=b (" in first.stdout

    second = run_stub(tmp_path, *args, "hydra.sweeper.budget.gpu_hours=1")
    assert second.returncode == 0, second.stderr[-3000:]
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["cell"] for r in rows) == ["task=a"] * 4 + ["task=b"] * 4
    assert "Budget reached" not in second.stdout


def test_a_cap_per_cell_ends_each_cell_on_its_own_and_keeps_its_repeats(tmp_path):
    # Task b's trials take 3 times as long, so its cap (3.6 GPU-seconds each) buys fewer of them.
    result = run_stub(
        tmp_path,
        "task=a,b",
        "hydra.sweeper.n_trials=30",
        "sleep=0.2",
        "slow_tasks=[b]",
        "slow_factor=3",
        "hydra.sweeper.budget.per_cell=0.001",
        "hydra.sweeper.repeats=2",
        *GRANT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "results.csv")
    by_cell = {cell: [r for r in rows if r["cell"] == cell] for cell in ("task=a", "task=b")}
    # Trials cost their sleep plus the machine's overhead: on a loaded machine b's cap may buy only one.
    assert 1 <= len(by_cell["task=b"]) < len(by_cell["task=a"]) < 30
    for cell_rows in by_cell.values():
        spent, one_trial = _hours(cell_rows), max(float(r["gpu_hours"]) for r in cell_rows)
        assert 0.001 - 2 * one_trial <= spent <= 0.001 + one_trial  # up to its cap, not past it
    assert "takes no more trials: budget.per_cell=0.001 GPU-hours reached" in result.stdout
    # The cap is on tuning: every cell still runs all its repeats (it ran none before).
    repeats = read_csv(tmp_path / "repeats.csv")
    assert (
        sorted((r["cell"], r["state"]) for r in repeats) == [("task=a", "COMPLETE")] * 2 + [("task=b", "COMPLETE")] * 2
    )


def test_a_converged_cell_stops_tuning_and_goes_on_to_its_repeats(tmp_path):
    # No trial beats the first by more than 100: after the first trial plus `patience` more, the
    # cell has converged, long before its n_trials.
    result = run_stub(
        tmp_path,
        "task=a,b",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.repeats=1",
        "hydra.sweeper.budget.patience=2",
        "hydra.sweeper.budget.min_delta=100",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["cell"] for r in rows) == ["task=a"] * 3 + ["task=b"] * 3
    assert "converged: no improvement over 100 in its last 2 finished trials" in result.stdout
    assert sorted(r["cell"] for r in read_csv(tmp_path / "repeats.csv")) == ["task=a", "task=b"]


def test_warm_start_from_siblings_tries_their_best_configurations_first(tmp_path):
    # Siblings: cells that differ only in the task. task=a runs first, task=b then starts from a's
    # best two configurations (a minimises: its lowest values).
    result = run_stub(
        tmp_path,
        "task=a,b",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.warm_start=siblings",
        "hydra.sweeper.sibling_key=task",
        "hydra.sweeper.warm_start_top_k=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = sorted(read_csv(tmp_path / "results.csv"), key=lambda r: int(r["job_num"]))
    assert [r["task"] for r in rows] == ["a"] * 4 + ["b"] * 4  # b waited for its sibling
    a_best = sorted((r for r in rows if r["task"] == "a"), key=lambda r: float(r["value"]))[:2]
    b_first = [r for r in rows if r["task"] == "b"][:2]
    assert [r["warm_start_from"] for r in b_first] == [f"task=a #{r['trial']}" for r in a_best]
    assert [(r["x"], r["y"]) for r in b_first] == [(r["x"], r["y"]) for r in a_best]
    assert not any(r["warm_start_from"] for r in rows if r["task"] == "a")


def test_warm_start_from_an_earlier_sweep_seeds_the_matching_cell(tmp_path):
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    grid = ["task=a,b", "model=x,y"]
    assert run_stub(earlier, *grid, "hydra.sweeper.n_trials=3").returncode == 0
    result = run_stub(
        later,
        *grid,
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.warm_start={earlier}",
        "hydra.sweeper.sibling_key=task",
        "hydra.sweeper.warm_start_top_k=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = read_csv(earlier / "results.csv"), read_csv(later / "results.csv")
    for cell in ("task=a,model=x", "task=b,model=y"):
        # a minimises, b maximises: each cell starts from its own best configuration of the earlier sweep
        pick = min if cell.startswith("task=a") else max
        best = pick((r for r in before if r["cell"] == cell), key=lambda r: float(r["value"]))
        first = min((r for r in after if r["cell"] == cell), key=lambda r: int(r["trial"]))
        assert first["warm_start_from"] == f"{cell} #{best['trial']}" and first["x"] == best["x"]


@pytest.mark.parametrize(
    "override, words",
    [
        ("hydra.sweeper.budget.gpu_hours=-1", "budget.gpu_hours=-1.0: give a positive number of hours"),
        ("hydra.sweeper.budget.patience=0", "budget.patience=0: give a whole number of trials >= 1"),
        ("hydra.sweeper.warm_start=/no/such/sweep", "warm_start='/no/such/sweep': use 'siblings', or the directory"),
    ],
)
def test_impossible_budget_and_warm_start_settings_are_refused_before_anything_is_created(tmp_path, override, words):
    result = run_stub(tmp_path / "sweep", "task=a,b", override)
    assert result.returncode != 0 and words in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "sweep").exists()


def test_the_dry_run_states_the_budget_and_warm_start(tmp_path):
    result = run_stub(
        tmp_path / "sweep",
        "task=a,b",
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.budget.gpu_hours=3",
        "hydra.sweeper.budget.patience=4",
        "hydra.sweeper.warm_start=siblings",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "budget: gpu_hours=3.0, patience=4, min_delta=0.0; warm start from siblings (top 3)" in result.stdout
