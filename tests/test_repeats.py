"""Seed repeats through the stub app: queued per cell the moment its tuning is done, in the same
loop and slots; fixed best params and seeds; resumed like trials; the test split kept for them."""

from __future__ import annotations

import json
import signal
from datetime import datetime

import pytest

from tests.helpers import output, read_csv, run_stub, start_stub, studies, wait_for

pytestmark = pytest.mark.duration(30)


def _repeats(sweep) -> list[dict[str, str]]:
    return read_csv(sweep / "repeats.csv")


def _by_cell(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    cells: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        cells.setdefault(row["cell"], []).append(row)
    return cells


def test_each_cells_best_params_are_repeated_with_the_same_seeds_as_soon_as_its_tuning_is_done(tmp_path):
    sweep = tmp_path / "sweep"
    # task=b's trials are slow: task=a finishes tuning first, and its repeats must not wait for b.
    result = run_stub(
        sweep,
        "task=a,b",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.repeats=3",
        "hydra.sweeper.n_jobs=1",
        "sleep=0.05",
        "slow_factor=4",
        "slow_tasks=[b]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tuning = {cell: rows for cell, rows in _by_cell(read_csv(sweep / "results.csv")).items()}
    repeats = _by_cell(_repeats(sweep))
    for cell, rows in repeats.items():
        assert sorted(int(r["seed"]) for r in rows) == [1, 2, 3]  # the same fixed seeds for every cell
        assert {r["state"] for r in rows} == {"COMPLETE"}
        best = min(tuning[cell], key=lambda r: float(r["value"]) * (1 if r["direction"] == "minimize" else -1))
        assert {(r["x"], r["y"]) for r in rows} == {(best["x"], best["y"])}  # the best trial's params
        assert {r["tuning_best_trial"] for r in rows} == {best["trial"]}
        # What the job returned besides its objective: the test value, every test metric, the checkpoint.
        assert all(
            float(r["test_value"]) == float(r["test/score"]) == float(r["val_value"]) + int(r["seed"]) / 100
            for r in rows
        )
        assert all(r["checkpoint"].endswith("best.ckpt") and r["n_trials"] == "3" for r in rows)
    # No phase barrier: task=a's first repeat started before task=b's tuning was over.
    first_repeat_a = min(datetime.fromisoformat(r["started_at"]) for r in repeats["task=a"])
    last_tuning_b = max(datetime.fromisoformat(r["finished_at"]) for r in tuning["task=b"])
    assert first_repeat_a < last_tuning_b
    best = {r["cell"]: r for r in read_csv(sweep / "best.csv")}
    for cell, rows in repeats.items():
        values = [float(r["test_value"]) for r in rows]
        assert int(best[cell]["n_repeats"]) == 3
        assert float(best[cell]["test_mean"]) == sum(values) / 3


def test_a_cell_without_a_search_space_goes_straight_to_repeats_of_its_composed_config(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub(sweep, "task=a", "search_space=null", "x=1.5", "y=2", "hydra.sweeper.repeats=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_csv(sweep / "results.csv") == []  # not one tuning trial
    rows = _repeats(sweep)
    assert [(r["seed"], r["state"], float(r["val_value"])) for r in rows] == [
        ("1", "COMPLETE", 3.0),
        ("2", "COMPLETE", 3.0),
    ]

    sweep = tmp_path / "n_trials_0"
    result = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=0", "hydra.sweeper.seeds=[7,11]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(r["seed"] for r in _repeats(sweep)) == ["11", "7"]


def test_a_driver_killed_during_repeats_resumes_them_with_the_same_params_and_seeds(tmp_path):
    sweep, release = tmp_path / "sweep", tmp_path / "release"
    args = [
        "task=a,b",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=3",
        "hold_phase=repeat",
        "hold_trials=[1]",
        f"release={release}",
    ]
    driver = start_stub(sweep, *args)
    # The held repeat itself, not whichever trial happens to be running when repeats.csv appears.
    held = wait_for(lambda: next((p.parent for p in sweep.glob("*/held")), None), 60, "a repeat held running")
    chosen = {
        label: (s.user_attrs["best_params"], s.user_attrs["seeds"]) for label, s in _repeat_studies(sweep).items()
    }
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # (Not Optuna's journal lock: a symlink that exists only while a driver writes.)
    before = [p for p in sweep.rglob("*") if p.is_file() and not p.is_symlink()]

    release.touch()
    result = run_stub(sweep, *args)
    assert result.returncode == 0, result.stderr[-3000:] + output(sweep)
    assert all(p.exists() for p in before)  # nothing deleted
    assert not (held / "timing.json").exists()  # the killed repeat never finished there
    repeats = _repeat_studies(sweep)
    for label, study in repeats.items():
        if label in chosen:
            assert (study.user_attrs["best_params"], study.user_attrs["seeds"]) == chosen[label]  # never re-picked
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") == 3 and states.count("WAITING") == 0
    for study in studies(sweep).values():
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # tuning was not redone
    rows = _by_cell(_repeats(sweep))
    for cell_rows in rows.values():
        done = [r for r in cell_rows if r["state"] == "COMPLETE"]
        assert sorted(int(r["seed"]) for r in done) == [1, 2, 3]
    interrupted = [r for r in _repeats(sweep) if r["interrupted"] == "True"]
    assert len(interrupted) == 1 and interrupted[0]["seed"] == "2"  # repeat #1 had seed 2
    # Recorded as interrupted, not as a failed repeat; its seed's rerun is the row that counts.
    assert (interrupted[0]["state"], interrupted[0]["counts"]) == ("INTERRUPTED", "False")
    counting = [(r["cell"], r["seed"]) for r in _repeats(sweep) if r["counts"] == "True"]
    assert len(counting) == len(set(counting)) == 6  # one row per cell x seed
    assert all(r["state"] == "COMPLETE" for r in _repeats(sweep) if r["counts"] == "True")


def test_fewer_repeats_on_resume_keep_the_seeds_already_chosen_and_say_so(tmp_path):
    sweep = tmp_path / "sweep"
    first = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=1", "hydra.sweeper.repeats=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=1", "hydra.sweeper.repeats=1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        "its repeats keep the 3 seeds [1, 2, 3] they started with (this command asks for 1)"
        in again.stdout + again.stderr
    )
    assert sorted(int(r["seed"]) for r in _repeats(sweep)) == [1, 2, 3]


def _repeat_studies(sweep) -> dict:
    import optuna

    from hydra_plugins.bench_sweeper._repeats import repeat_records
    from hydra_plugins.bench_sweeper._studies import open_storage

    storage = open_storage(str(sweep / "optuna.journal"))
    sweep_id = json.loads((sweep / "sweep.json").read_text())["sweep_id"]
    return {
        r.attrs["cell"]: optuna.load_study(study_name=r.name, storage=storage)
        for r in repeat_records(storage, sweep_id)
    }


def test_repeats_that_cannot_read_the_test_split_fail_the_cells_repeats_not_its_tuning(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub(sweep, "task=a", "hydra.sweeper.repeats=3", "fail_tests=true", cwd=tmp_path)
    assert result.returncode == 1
    assert [r["state"] for r in read_csv(sweep / "results.csv")] == ["COMPLETE"] * 3
    (failed,) = _repeats(sweep)  # stopped at the first: every repeat would repeat it
    assert failed["state"] == "FAIL" and "task a: the test split cannot be read" in failed["error"]
    assert "[default repeats] stopped, no new trials" in result.stdout + result.stderr
    assert "cells stopped before their budget: default repeats (trial 0 raised" in result.stderr


def test_bad_repeat_settings_get_a_sentence_before_anything_is_created(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub(sweep, "task=a", "hydra.sweeper.repeats=2", "hydra.sweeper.seed_key=training.seed", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr.split("SweepConfigError")[-1]
    assert "hydra.sweeper.seed_key='training.seed', which is not a key of its config" in result.stderr
    result = run_stub(sweep, "task=a", "hydra.sweeper.repeats=3", "hydra.sweeper.seeds=[1,1,2]", cwd=tmp_path)
    assert "hydra.sweeper.seeds=[1, 1, 2] must be distinct whole numbers" in result.stderr
    assert not sweep.exists()

    assert run_stub(sweep, "task=a", "hydra.sweeper.repeats=2", cwd=tmp_path).returncode == 0
    result = run_stub(sweep, "task=a", "hydra.sweeper.seeds=[5,6]", cwd=tmp_path)
    assert result.returncode == 1
    assert "its repeats were started with seeds [1, 2], and this command asks for [5, 6]" in result.stderr
    result = run_stub(sweep, "task=a", "hydra.sweeper.repeats=3", cwd=tmp_path)  # one more seed: added
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(r["seed"] for r in _repeats(sweep)) == ["1", "2", "3"]
