"""Planning shares many cells among forked workers (_parallel.map_cells): the results come back in
order, a cell whose handling raises raises in the driver as it would without workers, and a pool
that cannot return a result falls back to planning in the driver."""

from __future__ import annotations

import os

import pytest

from hydra_plugins.bench_sweeper._parallel import MIN_CELLS, map_cells
from tests.helpers import read_csv, run_tracked_stub, studies, tree

pytestmark = pytest.mark.duration(45)

CELLS = max(MIN_CELLS, 24)


def test_cells_are_handled_by_forked_workers_and_come_back_in_order():
    results = map_cells(CELLS, lambda i: (i * i, os.getpid()))
    assert [value for value, _ in results] == [i * i for i in range(CELLS)]
    if (os.cpu_count() or 1) >= 2:
        assert os.getpid() not in {pid for _, pid in results}  # none handled here: all in workers


def test_a_cell_that_raises_raises_in_the_driver_with_its_own_error():
    def job(i: int) -> int:
        if i == 7:
            raise KeyError("cell 7 is wrong")
        return i

    with pytest.raises(KeyError, match="cell 7 is wrong"):
        map_cells(CELLS, job)


def test_results_that_cannot_come_back_are_computed_in_the_driver():
    results = map_cells(CELLS, lambda i: lambda: i)  # a lambda does not pickle
    assert [make() for make in results] == list(range(CELLS))


def test_a_sweep_of_many_cells_planned_by_workers_runs_and_tracks_every_cell(tmp_path):
    """12 cells (2 tasks x 2 models x 3 values of a new key): planned in forked workers, then run
    and tracked from the configs the workers composed."""
    from mlflow import MlflowClient

    result = run_tracked_stub(tmp_path, "task=a,b", "model=x,y", "+z=1,2,3", "hydra.sweeper.n_trials=1")
    assert result.returncode == 0, result.stderr[-3000:]
    found = studies(tmp_path / "sweep")
    assert len(found) == 12 and all(len(s.trials) == 1 for s in found.values())
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert sorted((r["task"], r["model"], r["z"]) for r in rows) == sorted(
        (t, m, z) for t in "ab" for m in "xy" for z in "123"
    )
    levels = tree(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    assert len(levels["cell"]) == 12 and len(levels["trial"]) == 12
