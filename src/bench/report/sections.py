"""The report's headline sections, assembled from what build.py computed: the leaderboard table
and its files, protocols side by side (protocols.py), cost against accuracy, the per-cell table (cells.csv), the tuning analysis per cell
and the provenance (provenance.csv)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import analysis, cells, frontier, headline, protocols, provenance
from bench.report.layout import Top


def board_notes(board: headline.Board, data: pd.DataFrame, normalised: bool) -> list[str]:
    """What the table leaves out, and why (one model: no rank, no aggregate)."""
    if board.empty:
        return [
            "No test score yet (no finished seed repeat): the tuning analysis below is what this sweep has; "
            "resume it with hydra.sweeper.repeats=N to add test scores."
        ]
    said = []
    if data["model"].nunique() == 1:
        said.append(
            "One model: raw scores only. Min-max normalising by the range observed across models needs two "
            "(with one, every score maps to a meaningless 0.5 in [0, 1]), and a rank among one is always 1; "
            "give --normalizer {dataset: [min, max]} for a normalised aggregate."
        )
    elif not normalised:
        said.append("No normalised aggregate: no dataset was scored by two models (give --normalizer).")
    return said


def top(
    args: Any,
    title: str,
    data: pd.DataFrame,
    scores: pd.DataFrame,
    datasets: pd.DataFrame,
    groups: pd.DataFrame,
    flags: pd.DataFrame,
    tuning: pd.DataFrame,
    costs: pd.DataFrame | None,
    sweep_dirs: list[Path],
    out: Path,
) -> Top:
    # What an earlier report wrote here and this one may not (a cell fewer, no scores yet) must go.
    for pattern in ("leaderboard.*", "protocols.*", "frontier.*", "cells.csv", "tuning_*.png"):
        for stale in out.glob(pattern):
            stale.unlink()
    board = headline.board(datasets, groups)
    files = headline.write(board, out)
    side_by_side = protocols.table(datasets, scores, board.digits)  # one model under several protocols
    protocol_files = protocols.write(side_by_side, out)
    normalised = bool(groups["value"].notna().any())
    points, why = frontier.points(groups, costs)
    image = None
    if not points.empty:
        points.to_csv(out / "frontier.csv", index=False)
        image = frontier.plot(points, out / "frontier.png")
    tuned = analysis.cells(tuning, sweep_dirs, flags)
    per_cell = cells.table(tuned, flags, sweep_dirs)
    if not per_cell.empty:
        per_cell.to_csv(out / "cells.csv", index=False)
    figures = [(cell, analysis.plot_cell(cell, out / f"tuning_{n}.png")) for n, cell in enumerate(tuned)]
    facts = provenance.table(args.argv, args.inputs, sweep_dirs, costs)
    facts.to_csv(out / "provenance.csv", index=False)
    return Top(
        title=title,
        board=board,
        board_notes=board_notes(board, data, normalised),
        files=files,
        side_by_side=side_by_side,
        protocol_files=protocol_files,
        frontier=image,
        frontier_note=why,
        cells=per_cell,
        provenance=facts,
        analysis=figures,
    )
