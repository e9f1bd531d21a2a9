"""Budgets never make models unequal silently (issue 22, part 4), and the reports that had nothing
honest to show (part 5): fewer completed tuning trials, failed repeats and fewer seeds are said per
cell; a one-model report shows raw scores and why; a sweep with no repeats yet gets its tuning tables.
Sweep dirs in the sweeper's own CSV layout (tests/test_report_merge.py write_sweep), pages in a real
browser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_report_merge import cell, datasets, run, seeds, write_sweep

pytestmark = pytest.mark.duration(20)

CAPPED = ["COMPLETE"] * 10 + ["FAIL"] * 2 + ["PRUNED"] * 4  # a per-cell cap met with failures and pruning


def test_unequal_tuning_trials_failed_repeats_and_missing_seeds_are_said_per_cell(tmp_path, capsys):
    from tests.browser import render

    cells = [
        cell("burns", "prithvi", seeds(0.6), trials=["COMPLETE"] * 16),
        cell("burns", "resnet50", {**seeds(0.5), 4: None}, trials=CAPPED),  # seed 4 failed
        cell("floods", "prithvi", seeds(0.4), trials=["COMPLETE"] * 16),
        cell("floods", "resnet50", seeds(0.3), trials=["COMPLETE"] * 16, version=2),
        cell("cropland", "prithvi", {1: None, 2: None}, trials=["COMPLETE"] * 16),  # every repeat failed
        # the first version of a cell whose experiment changed: another experiment's trials and seeds
        cell("floods", "resnet50", seeds(0.2), trials=["COMPLETE"] * 20, version=1),
    ]
    sweep = write_sweep(tmp_path / "sweep", cells)
    out, stderr = run(tmp_path, capsys, str(sweep))

    table = datasets(out)
    assert table["tuning_trials"].to_dict() == {
        ("prithvi", "burns"): 16,
        ("prithvi", "floods"): 16,
        ("resnet50", "burns"): 10,
        ("resnet50", "floods"): 16,
    }
    assert table.loc[("resnet50", "burns"), "failed_repeats"] == 1 and table.loc[("resnet50", "burns"), "n_seeds"] == 4
    note = table.loc[("resnet50", "burns"), "note"]
    assert note == (
        "10 completed tuning trials, 16 for another model on burns; 1 failed repeat(s) (seed 4); "
        "4 seeds where another cell has 5"
    )
    assert pd.isna(table.loc[("prithvi", "floods"), "note"])  # nothing sets it apart
    assert table["raw_mean"].loc[("resnet50", "floods")] == pytest.approx(0.33)  # the latest version's scores

    tuning = pd.read_csv(out / "tuning.csv").set_index("curve")
    capped = tuning.loc["resnet50 / burns"]
    assert capped[["n_trials", "completed", "pruned", "failed", "fewer_trials"]].tolist() == [14, 10, 4, 2, True]
    assert capped["note"] == "10 completed tuning trials, 16 for another model on burns; 2 failed, 4 pruned"
    assert not tuning.loc["resnet50 / floods", "fewer_trials"] and tuning.loc["resnet50 / floods", "completed"] == 16

    assert f"bench.report: resnet50 / burns: {note}" in stderr
    assert "bench.report: prithvi / cropland: every repeat failed (2), so it has no test score" in stderr

    page = render(out / "report.html", screenshot=tmp_path / "report.png")
    assert page.console_errors == [] and page.failed_requests == []
    assert f"resnet50 / burns: {note}" in page.text  # the page's notes
    failed = page.text.split("Failed repeats (no test score)\n", 1)[1].splitlines()
    assert failed[0].split("\t") == ["model", "dataset", "seed", "error", "sweep"]
    assert failed[1:4] == [
        "prithvi\tcropland\t1\tRuntimeError: NaN loss\tsweep",
        "prithvi\tcropland\t2\tRuntimeError: NaN loss\tsweep",
        "resnet50\tburns\t4\tRuntimeError: NaN loss\tsweep",
    ]


@pytest.mark.parametrize("counts", [True, False], ids=["counts column", "before the counts column"])
def test_an_interrupted_repeat_run_again_is_one_seed_and_no_failure(tmp_path, capsys, counts):
    """A driver stopped during repeats: seed 2's first run was interrupted, its rerun completed. The
    report counts seed 2 once and shows no failed repeat (repeats.csv marks the row that counts;
    before that column, the interrupted run was recorded FAIL with interrupted=True)."""
    cells = [cell("burns", m, seeds(b)) for m, b in (("prithvi", 0.6), ("resnet50", 0.5))]
    sweep = write_sweep(tmp_path / "sweep", cells, interrupted=(2,), counts=counts)
    out, stderr = run(tmp_path, capsys, str(sweep))
    table = datasets(out)
    assert table["n_seeds"].tolist() == [5, 5] and table["failed_repeats"].tolist() == [0, 0]
    assert table["note"].isna().all() and "failed" not in stderr
    assert "Failed repeats" not in (out / "report.html").read_text()


def test_a_one_model_report_shows_raw_scores_and_says_why(tmp_path, capsys):
    """Min-max normalisation across models means nothing for one model: before, every dataset read
    0.5 with a CI near [0, 1], and the group an aggregate of that."""
    from tests.browser import render

    values = {"burns": seeds(0.6), "floods": {1: 0.41, 2: 0.47, 3: 0.40, 4: 0.52, 5: 0.44}}
    sweep = write_sweep(tmp_path / "sweep", [cell(task, "prithvi", v) for task, v in values.items()])
    out, stderr = run(tmp_path, capsys, str(sweep))
    table = datasets(out)
    assert table["normalized_iqm"].isna().all() and table["ci_low"].isna().all()
    from bench.report.intervals import yuen  # the raw scores' interval is the per-dataset one

    for task, scores in values.items():
        low, high = yuen(np.array(list(scores.values())))
        row = table.loc[("prithvi", task)]
        assert (row["raw_ci_low"], row["raw_ci_high"]) == pytest.approx((low, high))
        assert row["raw_ci_low"] < row["raw_iqm"] < row["raw_ci_high"]
    groups = pd.read_csv(out / "groups.csv")
    assert groups["value"].isna().all() and groups["reason"].str.contains("give --normalizer").all()
    why = "one model and no --normalizer: min-max normalisation across models needs two"
    assert why in stderr

    page = render(out / "report.html")
    assert page.console_errors == [] and why in page.text
    # raw scores; no aggregate, no profile, no cost front; each cell's tuning analysis
    alts = [alt for alt, _, _ in page.images]
    assert alts == ["tuning", "cell prithvi / burns", "cell prithvi / floods", "raw"]
    assert "Groups" not in page.text.split("\n") and "normalized_iqm" not in page.text
    # the leaderboard: raw mean ± std, no rank among one, no aggregate, and the page says why
    board = pd.read_csv(out / "leaderboard.csv")
    columns = ["model"] + [f"{t} {c}" for t in ("burns", "floods") for c in ("mean", "std", "n_seeds", "best")]
    assert list(board.columns) == columns
    assert not board[["burns best", "floods best"]].any(axis=None)  # no best among one model
    assert "One model: raw scores only" in page.text and "meaningless 0.5" in page.text
    assert "No figure: no normalised aggregate" in page.text

    out, stderr = run(tmp_path / "compat", capsys, str(sweep), "--compat", "geobench2-leaderboard")
    assert datasets(out)["normalized_iqm"].isna().all() and pd.read_csv(out / "groups.csv")["value"].isna().all()
    assert why in stderr

    # with a fixed normaliser one model has a meaningful normalised score
    normalizer = tmp_path / "normalizer.json"
    normalizer.write_text('{"burns": [0.5, 0.7], "floods": [0.3, 0.5]}')
    out, stderr = run(tmp_path / "fixed", capsys, str(sweep), "--normalizer", str(normalizer))
    assert datasets(out).loc[("prithvi", "burns"), "normalized_iqm"] == pytest.approx((0.63 - 0.5) / 0.2)
    assert pd.read_csv(out / "groups.csv")["value"].notna().all() and why not in stderr


def test_a_sweep_tuned_without_repeats_yet_reports_its_tuning(tmp_path, capsys):
    """Before: 'has no repeats.csv', and no report at all."""
    from tests.browser import render

    sweep = write_sweep(
        tmp_path / "sweep",
        [
            cell("burns", "prithvi", {}, trials=["COMPLETE"] * 6),
            cell("burns", "resnet50", {}, trials=["COMPLETE", "FAIL", "COMPLETE"]),
        ],
    )
    assert not (sweep / "repeats.csv").exists()
    out, stderr = run(tmp_path, capsys, str(sweep))
    tuning = pd.read_csv(out / "tuning.csv").set_index("curve")
    assert tuning["completed"].to_dict() == {"prithvi / burns": 6, "resnet50 / burns": 2}
    assert pd.read_csv(out / "datasets.csv").empty and pd.read_csv(out / "scores.csv").empty
    assert "no test score yet (no finished seed repeat): only the tuning tables" in stderr
    assert "bench.report: tuning resnet50 / burns: 2 completed tuning trials, 6 for another model on burns" in stderr
    page = render(out / "report.html")
    alts = [alt for alt, _, _ in page.images]
    assert page.console_errors == [] and alts == ["tuning", "cell prithvi / burns", "cell resnet50 / burns"]
    # per cell, provenance, then the tuning table and the cost matrix; no leaderboard table
    assert page.tables == 4 and "Tuning" in page.text and "No test score yet" in page.text
    assert not (out / "leaderboard.csv").exists()
