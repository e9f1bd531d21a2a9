"""python -m bench.report: the leaderboard's figures reproduced, the statistics' coverage, bad input,
and the page in a real browser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import stats
from bench.report.build import build, parse_args, tuning_table
from tests.helpers import UNACCOUNTED_CELLS, read_csv, write_cost_sweep
from tests.warm_cli import python_m

pytestmark = pytest.mark.duration(90)

LEADERBOARD = Path(__file__).parent / "data" / "geobench2_leaderboard"
SUBMISSION = LEADERBOARD / "submission_114be1f0-5a41-43a5-b4e6-7fb683bc01ec.csv"
NORMALIZER = LEADERBOARD / "normalizer_leaderboard_combined.json"
DATASETS_COLUMNS = [
    "model",
    "dataset",
    "metric",
    "direction",
    "n_seeds",
    "raw_mean",
    "raw_std",
    "normalized_iqm",
    "ci_low",
    "ci_high",
    "raw_iqm",
    "raw_ci_low",
    "raw_ci_high",
    "tuning_trials",
    "failed_repeats",
    "note",
]
GROUPS_COLUMNS = ["model", "group", "value", "ci_low", "ci_high", "se", "reason"]


def report(*argv: str) -> subprocess.CompletedProcess:
    """`python -m bench.report ...` in a process of its own (forked from a warm interpreter)."""
    return python_m("bench.report", *argv, timeout=300)


@pytest.fixture(scope="module")
def compat_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compat")
    build(
        parse_args(
            [
                str(SUBMISSION),
                "--normalizer",
                str(NORMALIZER),
                "--groups",
                "geobench2",
                "--compat",
                "geobench2-leaderboard",
                "--out",
                str(out),
                "--no-mlflow",
            ]
        )
    )
    return out


def test_compat_reproduces_the_leaderboards_per_dataset_table(compat_report):
    ours = pd.read_csv(compat_report / "datasets.csv", float_precision="round_trip")
    assert list(ours.columns) == DATASETS_COLUMNS
    theirs = pd.read_csv(LEADERBOARD / "per_dataset_iqm.csv", float_precision="round_trip").set_index("backbone")
    assert len(ours) == theirs.notna().sum().sum() == 18 * 19 - 4 * 4
    for row in ours.itertuples():
        assert row.normalized_iqm == pytest.approx(theirs.loc[row.model, row.dataset], abs=1e-9)
    # A few, as the leaderboard's code gives them (tests/data/geobench2_leaderboard/README.md).
    value = ours.set_index(["model", "dataset"])["normalized_iqm"]
    assert value["terramind_v1_large", "benv2"] == pytest.approx(0.8811201754495309, abs=1e-9)
    assert value["clay_v1_base", "biomassters"] == pytest.approx(0.7075317298606691, abs=1e-9)
    assert value["resnet50", "kuro_siwo"] == pytest.approx(0.2125559378534634, abs=1e-9)


def test_compat_reproduces_the_leaderboards_core_column(compat_report):
    ours = pd.read_csv(compat_report / "groups.csv", float_precision="round_trip")
    assert list(ours.columns) == GROUPS_COLUMNS
    core = ours[ours["group"] == "Core"].set_index("model")
    theirs = pd.read_csv(LEADERBOARD / "groups.csv", float_precision="round_trip")
    theirs = theirs[theirs["group"] == "Core"].dropna(subset=["value"]).set_index("backbone")
    assert len(theirs) == 14
    for model, row in theirs.iterrows():
        assert core.loc[model, "value"] == pytest.approx(row["value"], abs=1e-12)
        assert core.loc[model, "se"] == pytest.approx(row["se"], abs=1e-12)
    # The site shows 77.8 ± 0.1, 61.4 ± 0.1 and 26.8 ± 0.2 for these.
    assert core.loc["clay_v1_base", "value"] == pytest.approx(0.7780038209332251, abs=1e-12)
    assert core.loc["terramind_v1_large", "value"] == pytest.approx(0.6144787380785498, abs=1e-12)
    assert core.loc["resnet50", "se"] == pytest.approx(0.0017324120087027638, abs=1e-12)
    # Without the detection datasets there is no Core value, and the row says why.
    assert np.isnan(core.loc["dofa_base_patch16_224", "value"])
    assert core.loc["dofa_base_patch16_224", "reason"] == "no scores for everwatch, substation"


def test_bootstrap_ci_covers_the_true_iqm_about_95_percent_of_the_time():
    """Seeds ~ Normal(mu_d, 0.05) on 6 datasets: the population IQM of the pooled scores is known
    (by a large sample); the stratified CI should cover it ~95 % of the time."""
    rng = np.random.default_rng(12345)
    means = np.linspace(0.3, 0.8, 6)
    truth = float(stats.iqm(np.concatenate([rng.normal(m, 0.05, 400_000) for m in means])))
    covered = 0
    for repetition in range(200):
        strata = [rng.normal(m, 0.05, 20) for m in means]
        scores = pd.DataFrame(
            {"model": "m", "dataset": np.repeat([f"d{i}" for i in range(6)], 20), "normalized": np.concatenate(strata)}
        )
        row = stats.group_table(
            scores, {"All": [f"d{i}" for i in range(6)]}, stats.Settings(n_bootstrap=500, seed=repetition)
        ).iloc[0]
        covered += row.ci_low <= truth <= row.ci_high
    assert 0.89 <= covered / 200 <= 0.99


def test_resampling_datasets_too_widens_the_interval_when_datasets_disagree():
    rng = np.random.default_rng(7)
    datasets = [f"d{i}" for i in range(6)]
    scores = pd.DataFrame(
        {
            "model": "m",
            "dataset": np.repeat(datasets, 5),
            "normalized": np.concatenate([rng.normal(m, 0.02, 5) for m in np.linspace(0.1, 0.9, 6)]),
        }
    )
    seeds = stats.group_table(scores, {"All": datasets}, stats.Settings(500, 0)).iloc[0]
    both = stats.group_table(scores, {"All": datasets}, stats.Settings(500, 0, resample_datasets=True)).iloc[0]
    assert seeds.value == both.value  # the point estimate does not depend on the resampling
    assert both.ci_high - both.ci_low > 3 * (seeds.ci_high - seeds.ci_low)
    assert both.se > seeds.se


def test_normalisation_is_direction_aware_and_never_clipped_to_the_fixed_range():
    scores = pd.DataFrame(
        {
            "model": ["m", "n", "m", "n"],
            "dataset": ["a", "a", "b", "b"],
            "score": [0.2, 0.6, 10.0, 30.0],
            "direction": ["maximize", "maximize", "minimize", "minimize"],
        }
    )
    normalized = stats.normalize(scores, {"a": (0.0, 0.5), "b": (10.0, 20.0)})
    # 0.6 beats the range's best (1.2, not 1.0); RMSE 10 is the best (1), RMSE 30 below the worst (-1, not 0)
    assert normalized.tolist() == pytest.approx([0.4, 1.2, 1.0, -1.0])


def test_tuning_curve_keeps_the_best_value_through_pruned_trials():
    results = pd.DataFrame(
        {
            "sweep": "s",
            "cell": "c",
            "model": "m",
            "task": "t",
            "direction": "maximize",
            "trial": [0, 1, 2, 3],
            "state": ["COMPLETE", "PRUNED", "FAIL", "PRUNED"],
            "value": [0.3, 0.9, np.nan, 0.8],
        }
    )
    curves, flags = tuning_table(results)
    assert curves["best_so_far"].tolist() == [0.3, 0.3, 0.3]  # the FAIL trial is no position; pruned values never best
    assert flags.iloc[0][["n_trials", "best_value", "best_at_trial"]].tolist() == [3, 0.3, 1]


def test_tuning_flags_the_cells_whose_best_was_still_improving_in_the_last_quarter(monkeypatch, tmp_path):
    """8 trials each: a best found after trial 6 (the last quarter) is flagged, one found by then is not."""

    def cell(name: str, direction: str, values: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "sweep": "s",
                "cell": f"task={name}",
                "task": name,
                "model": "m",
                "direction": direction,
                "trial": range(len(values)),
                "state": "COMPLETE",
                "value": values,
            }
        )

    results = pd.concat(
        [
            cell("late", "maximize", [0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.4]),  # best at trial 8 of 8
            cell("early", "maximize", [0.1, 0.5, 0.4, 0.3, 0.2, 0.5, 0.1, 0.2]),  # best at 2 (the tie at 6 is no gain)
            cell(
                "boundary", "maximize", [0.1, 0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6]
            ),  # best at 6 = 0.75 x 8: not after it
            cell("late_rmse", "minimize", [9.0, 8.0, 8.0, 8.0, 8.0, 8.0, 7.0, 8.5]),  # lower is better: best at 7
        ],
        ignore_index=True,
    )
    curves, flags = tuning_table(results)
    flags = flags.set_index("curve")
    assert flags.loc["m / late", ["best_at_trial", "still_improving"]].tolist() == [8, True]
    assert flags.loc["m / early", ["best_at_trial", "still_improving"]].tolist() == [2, False]
    assert flags.loc["m / boundary", ["best_at_trial", "still_improving"]].tolist() == [6, False]
    assert flags.loc["m / late_rmse", ["best_at_trial", "best_value", "still_improving"]].tolist() == [7, 7.0, True]

    from bench.report import page

    drawn, save = {}, page.save

    def keep_styles(fig, path):
        drawn.update(
            {
                line.get_label(): (line.get_color(), line.get_linestyle(), line.get_marker())
                for line in fig.axes[0].get_lines()
            }
        )
        return save(fig, path)

    monkeypatch.setattr(page, "save", keep_styles)
    page.plot_tuning(curves, flags.reset_index(), tmp_path / "tuning.png")
    # flagged: dashed, triangles and said in the label; every curve keeps a colour of its own
    late, late_rmse = drawn["m / late (still improving)"], drawn["m / late_rmse (still improving)"]
    assert late[1:] == late_rmse[1:] == ("--", "^")
    assert drawn["m / early"][1:] == drawn["m / boundary"][1:] == ("-", ".")
    colours = [style[0] for style in drawn.values()]
    assert len(set(colours)) == len(colours) == 4


def test_probability_of_improvement_matches_a_hand_computed_case():
    """P(A > B) per dataset: the share of the 3 x 3 seed pairs A wins, a tie counting half.
      d1: A 0.5 0.7 0.9 vs B 0.4 0.6 0.7 -> A wins 1 + (2 + 0.5) + 3 = 6.5 of 9
      d2: A 0.2 0.3 0.4 vs B 0.1 0.3 0.5 -> A wins 1 + (1 + 0.5) + 2 = 4.5 of 9
    averaged over the datasets: (6.5 + 4.5) / 18 = 11/18; P(B > A) = 1 - 11/18 = 7/18."""
    seeds = {
        ("A", "d1"): [0.5, 0.7, 0.9],
        ("B", "d1"): [0.4, 0.6, 0.7],
        ("A", "d2"): [0.2, 0.3, 0.4],
        ("B", "d2"): [0.1, 0.3, 0.5],
    }
    scores = pd.DataFrame(
        [{"model": m, "dataset": d, "normalized": v} for (m, d), values in seeds.items() for v in values]
    )
    pairs = stats.pair_table(scores, {"All": ["d1", "d2"], "Second": ["d2"]}, stats.Settings(n_bootstrap=500, seed=0))
    assert list(pairs.columns) == ["group", "model_a", "model_b", "probability", "ci_low", "ci_high"]
    pairs = pairs.set_index(["group", "model_a", "model_b"])
    expected = {
        ("All", "A", "B"): 11 / 18,
        ("All", "B", "A"): 7 / 18,
        ("Second", "A", "B"): 4.5 / 9,
        ("Second", "B", "A"): 4.5 / 9,
    }
    assert len(pairs) == len(expected)
    for key, probability in expected.items():
        row = pairs.loc[key]
        assert row["probability"] == pytest.approx(probability, abs=1e-12), key
        assert 0.0 <= row["ci_low"] <= row["probability"] <= row["ci_high"] <= 1.0, key
        assert row["ci_low"] < row["ci_high"], key  # three seeds a side: the resamples differ


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_bad_input_gets_a_sentence(tmp_path):
    submission = pd.read_csv(SUBMISSION)
    no_seed = _write(tmp_path / "no_seed.csv", submission.drop(columns=["Seed"]).to_csv(index=False))
    result = report(no_seed)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "lacks the column(s) 'Seed' of the GEO-Bench-2 submission layout" in result.stderr

    partial = _write(tmp_path / "normalizer.json", json.dumps({"benv2": [0.7, 0.8]}))
    result = report(str(SUBMISSION), "--normalizer", partial)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        f"the normalizer {partial} has no [min, max] for dataset(s)" in result.stderr and "biomassters" in result.stderr
    )

    groups = _write(tmp_path / "groups.json", json.dumps({"Mine": ["benv2", "atlantis"]}))
    result = report(str(SUBMISSION), "--groups", groups)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "group 'Mine'" in result.stderr and "names dataset(s) atlantis that no input has" in result.stderr

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    result = report(str(sweep))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{sweep} has neither results.csv nor repeats.csv" in result.stderr
    (sweep / "results.csv").write_text("cell,state,value\n")
    result = report(str(sweep))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{sweep} hold(s) no test score and no tuning trial yet" in result.stderr

    result = report(str(SUBMISSION), "--where", "frozen_or_full_ft")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--where frozen_or_full_ft: write it as KEY=VALUE" in result.stderr
    result = report(str(SUBMISSION), "--where", "frozen=yes")
    assert result.returncode == 1 and "no input has a column 'frozen'" in result.stderr
    result = report(str(SUBMISSION), "--where", "frozen_or_full_ft=frozen")
    assert result.returncode == 1 and "--where frozen_or_full_ft=frozen keeps no row of the inputs" in result.stderr


def test_report_page_renders_in_a_real_browser(tmp_path):
    from tests.browser import render

    # Two models, three datasets (one lower-is-better), five seeds each.
    rng = np.random.default_rng(0)
    # "large" is better everywhere: higher accuracy and IoU, lower RMSE.
    rows = [
        {
            "dataset": dataset,
            "Metric": metric,
            "Seed": seed,
            "test metric": base + (shift if direction == "maximize" else -shift) + rng.normal(0, 0.01),
            "backbone": model,
            "direction": direction,
        }
        for model, shift in (("small", 0.0), ("large", 0.05))
        for dataset, metric, base, direction in (
            ("eurosat", "Overall_Accuracy", 0.9, "maximize"),
            ("floods", "Multiclass_Jaccard_Index", 0.6, "maximize"),
            ("biomass", "RMSE", 30.0, "minimize"),
        )
        for seed in range(5)
    ]
    source = _write(tmp_path / "scores.csv", pd.DataFrame(rows).to_csv(index=False))
    # Two more datasets from a sweep dir that recorded its costs, one from a sweep that did not.
    accounted = write_cost_sweep(tmp_path / "accounted")
    unaccounted = write_cost_sweep(tmp_path / "unaccounted", UNACCOUNTED_CELLS, accounted=False)
    out = tmp_path / "report"
    result = report(source, str(accounted), str(unaccounted), "--out", str(out), "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    assert "costs.csv" in result.stdout  # test_report_costs.py checks its figures
    for name in (
        "scores.csv",
        "datasets.csv",
        "groups.csv",
        "pairs.csv",
        "report.html",
        "groups.png",
        "datasets.png",
        "profile.png",
    ):
        assert (out / name).is_file(), name
    assert list(read_csv(out / "datasets.csv")[0]) == DATASETS_COLUMNS
    pairs = {(r["model_a"], r["model_b"]): float(r["probability"]) for r in read_csv(out / "pairs.csv")}
    assert pairs[("large", "small")] > 0.9  # better on every dataset, RMSE included (lower is better)

    page = render(out / "report.html", screenshot=tmp_path / "report.png")
    assert page.console_errors == [] and page.failed_requests == []
    alts = [alt for alt, _, _ in page.images]
    # the headline's cost-against-accuracy figure first, the tuning curves, then the statistics'
    assert alts[:2] == ["frontier", "tuning"] and alts[-3:] == ["groups", "datasets", "profile"]
    assert all(width > 100 and height > 100 for _, width, height in page.images)
    # leaderboard, per cell, provenance, then the details' groups, datasets, pairs, failed, tuning, costs
    assert page.tables == 9 and page.table_rows > 3 + 2 * 4
    assert page.text.index("Leaderboard") < page.text.index("Cost against accuracy") < page.text.index("Details")
    assert "Probability of improvement" in page.text and "large" in page.text
    # small's failed seed on burns (tests/helpers.COST_CELLS): its own table, and a note on its row
    assert "Failed repeats (no test score)" in page.text and "1 failed repeat(s) (seed 3)" in page.text
    # The cost matrix: models x datasets of GPU-hours and a total per model; unknown cells are empty
    # (the leaderboard CSV's datasets, the sweep from before costs were accounted), never 0.
    section = page.text.split("Compute cost (GPU-hours per model x task, tuning and repeats)\n", 1)[1].splitlines()
    assert section[0].split("\t") == ["model", "biomass", "burns", "cropland", "eurosat", "floods", "total"]
    assert section[1:] == [
        "baseline\t\t\t\t\t\t",  # innerText: a tab between cells, trailing empties too
        "large\t\t2\t3.25\t\t\t5.25",
        "small\t\t0.6625\t0.75\t\t\t1.413",
    ]
    # the leaderboard heads the page: large, best on every task (in bold) and by the aggregate, first
    board = pd.read_csv(out / "leaderboard.csv")
    table = (out / "report.html").read_text().split('<table class="leaderboard">', 1)[1].split("</table>", 1)[0]
    assert table.count("<b>") == board.filter(like=" best").to_numpy().sum() == 5
    assert table.split("<tbody><tr><td>", 1)[1].startswith("large<") and board["model"].iloc[0] == "large"
    keep_docs_screenshot(tmp_path / "report.png")


def keep_docs_screenshot(full_page: Path) -> None:
    """docs/report.png is this page's top as the test browser shows it (1280 x 900 px): written when
    BENCH_DOCS_SCREENSHOT=1, so that a test run leaves the checkout as it was."""
    import os

    if os.environ.get("BENCH_DOCS_SCREENSHOT") != "1":
        return
    from PIL import Image

    with Image.open(full_page) as image:
        image.crop((0, 0, image.width, min(image.height, 900))).save(Path(__file__).parents[1] / "docs" / "report.png")
