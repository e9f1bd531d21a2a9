"""The report puts protocols side by side for one model: one column per protocol (full_ft, frozen,
knn, ...), rows a base model x task, each cell the leaderboard's raw test mean ± std over seeds, the
best per row in bold by the task's direction; on the page after the leaderboard table and as
protocols.csv and protocols.md. Only when some model ran a task under two protocols. On sweep dirs
in the sweeper's own CSV layout (tests/test_report_merge.py's)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.test_report_merge import cell, run, seeds, write_sweep

pytestmark = pytest.mark.duration(20)


def _cell(task: str, model: str, base: float, finetuning: str, direction: str = "maximize") -> dict:
    made = cell(task, model, seeds(base, 3), finetuning=finetuning, direction=direction)
    if finetuning == "knn":
        made["described"]["decoder"] = "none"  # a probe trains no decoder (conf/protocol/knn.yaml)
    return made


@pytest.fixture
def compared(tmp_path, capsys) -> Path:
    """prithvi under full_ft (one sweep) and under knn and frozen (another) on two tasks, `loss`
    lower-is-better; resnet50 under full_ft only."""
    full = write_sweep(
        tmp_path / "full",
        [
            _cell("eurosat", "prithvi", 0.80, "full_ft"),
            _cell("loss", "prithvi", 0.30, "full_ft", "minimize"),
            _cell("eurosat", "resnet50", 0.70, "full_ft"),
        ],
    )
    probes = write_sweep(
        tmp_path / "probes",
        [
            _cell("eurosat", "prithvi", 0.60, "knn"),
            _cell("loss", "prithvi", 0.20, "knn", "minimize"),
            _cell("eurosat", "prithvi", 0.85, "frozen"),
        ],
    )
    out, _ = run(tmp_path, capsys, str(full), str(probes))
    return out


def test_one_column_per_protocol_with_the_scores_mean_and_std_and_the_best_in_bold(compared):
    scores = pd.read_csv(compared / "scores.csv")
    assert set(scores["model"]) == {
        "prithvi [full_ft, UNetDecoder]",
        "prithvi [frozen, UNetDecoder]",
        "prithvi [knn, none]",
        "resnet50 [full_ft, UNetDecoder]",
    }
    table = pd.read_csv(compared / "protocols.csv").set_index(["model", "dataset"])
    # the base model without its protocol (and the decoder a probe lacks); resnet50 ran one protocol: no row
    assert list(table.index) == [("prithvi", "eurosat"), ("prithvi", "loss")]
    assert [c for c in table.columns if c.endswith(" mean")] == ["full_ft mean", "frozen mean", "knn mean"]
    for (dataset, protocol), rows in scores[scores["backbone"] == "prithvi"].groupby(["dataset", "frozen_or_full_ft"]):
        assert table.loc[("prithvi", dataset), f"{protocol} mean"] == pytest.approx(rows["test metric"].mean())
        assert table.loc[("prithvi", dataset), f"{protocol} std"] == pytest.approx(rows["test metric"].std())
        assert table.loc[("prithvi", dataset), f"{protocol} n_seeds"] == len(rows) == 3
    assert pd.isna(table.loc[("prithvi", "loss"), "frozen mean"])  # frozen never ran on loss
    # eurosat: higher is better, frozen's 0.87 beats full_ft's 0.82; loss: lower is better, knn's 0.22
    best = {
        (d, c.removesuffix(" best"))
        for (_, d), row in table.iterrows()
        for c in table.columns
        if c.endswith(" best") and row[c]
    }
    assert best == {("eurosat", "frozen"), ("loss", "knn")}

    markdown = (compared / "protocols.md").read_text().splitlines()
    assert markdown[0] == "| model | task | full_ft | frozen | knn |"
    assert (
        markdown[2]
        == "| prithvi | eurosat (Multiclass_Jaccard_Index ↑) | 0.820 ± 0.010 | **0.870 ± 0.010** | 0.620 ± 0.010 |"
    )
    assert markdown[3] == "| prithvi | loss (Multiclass_Jaccard_Index ↓) | 0.320 ± 0.010 |  | **0.220 ± 0.010** |"
    page = (compared / "report.html").read_text()
    leaderboard, side = page.index('<table class="leaderboard">'), page.index("<h3>Protocols side by side</h3>")
    assert leaderboard < side < page.index("<h2>Cost against accuracy</h2>")  # right after the leaderboard
    assert "<td><b>0.870 ± 0.010</b></td>" in page[side:] and 'href="protocols.csv"' in page


def test_no_table_when_every_model_ran_one_protocol(tmp_path, capsys):
    sweep = write_sweep(
        tmp_path / "sweep",
        [_cell("eurosat", "prithvi", 0.8, "full_ft"), _cell("eurosat", "resnet50", 0.6, "knn")],
    )
    out, _ = run(tmp_path, capsys, str(sweep))
    assert (out / "leaderboard.csv").is_file()
    assert not list(out.glob("protocols.*"))
    assert "Protocols side by side" not in (out / "report.html").read_text()
