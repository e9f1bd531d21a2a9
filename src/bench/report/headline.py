"""The report's headline: the leaderboard table (models x tasks), on the page and as
leaderboard.csv, leaderboard.md and leaderboard.tex.

Per task the raw test mean ± standard deviation over seeds (the metric's own units, which a reader
of a paper expects), the best per task in bold; per model its average rank over the tasks it was
scored on and the normalised aggregate of each group with its 95 % CI (groups.csv's value). With
one model neither is shown: a rank among one is always 1, and the observed min-max normalisation
has nothing to compare with (build.py says so on the page).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report import latex
from hydra_plugins.bench_sweeper.api import MINIMIZE

ARROW = {True: "↓", False: "↑"}  # lower is better, higher is better


@dataclass
class Board:
    """What the table shows, as numbers; the writers below only format it."""

    mean: pd.DataFrame  # model x dataset
    std: pd.DataFrame
    seeds: pd.DataFrame
    labels: dict[str, str]  # dataset -> its header: "burns (mIoU ↑)"
    best: set[tuple[str, str]]  # (model, dataset) of the best mean per dataset
    rank: pd.Series | None  # model -> average rank; None with one model
    aggregates: dict[str, pd.DataFrame] = field(default_factory=dict)  # group -> model x value, ci_low, ci_high
    digits: dict[str, int] = field(default_factory=dict)  # dataset -> decimals

    @property
    def empty(self) -> bool:
        return self.mean.empty


def _digits(means: pd.Series, stds: pd.Series) -> int:
    """Three significant digits of the largest mean (0.853, 31.2), more where the typical spread
    over seeds would read 0.0 (29.948 ± 0.012); 1 to 4 decimals."""
    largest, spread = means.abs().max(), stds.abs().median()
    digits = 3 if not largest or pd.isna(largest) or largest <= 1 else 2 - math.floor(math.log10(largest))
    if spread and pd.notna(spread):
        digits = max(digits, -math.floor(math.log10(spread)))
    return max(1, min(4, digits))


def board(datasets: pd.DataFrame, groups: pd.DataFrame) -> Board:
    """From datasets.csv's and groups.csv's rows."""
    if datasets.empty:
        empty = pd.DataFrame()
        return Board(empty, empty, empty, {}, set(), None)
    mean = datasets.pivot(index="model", columns="dataset", values="raw_mean")
    std = datasets.pivot(index="model", columns="dataset", values="raw_std")
    seeds = datasets.pivot(index="model", columns="dataset", values="n_seeds")
    first = datasets.groupby("dataset").first()
    lower = {d: first.loc[d, "direction"] == MINIMIZE for d in mean.columns}
    labels = {d: f"{d} ({first.loc[d, 'metric']} {ARROW[lower[d]]})" for d in mean.columns}
    best = set()
    for dataset in mean.columns:
        column = mean[dataset].dropna()
        if len(column) > 1:  # a best among one model says nothing
            top = column.min() if lower[dataset] else column.max()
            best |= {(model, dataset) for model in column.index[column == top]}
    rank = None
    if len(mean) > 1:
        ranks = pd.DataFrame({d: mean[d].rank(ascending=lower[d], method="average") for d in mean.columns})
        rank = ranks.mean(axis=1)
    aggregates = {}
    for group, rows in groups.groupby("group", sort=False):
        if rows["value"].notna().any():
            aggregates[str(group)] = rows.set_index("model")[["value", "ci_low", "ci_high"]]
    digits = {d: _digits(mean[d], std[d]) for d in mean.columns}
    return Board(mean, std, seeds, labels, best, rank, aggregates, digits)


def _order(b: Board) -> list[str]:
    """Best first: by the first aggregate, else the average rank, else the name."""
    if b.aggregates:
        value = next(iter(b.aggregates.values()))["value"].reindex(b.mean.index)
        return list(value.sort_values(ascending=False, na_position="last").index)
    if b.rank is not None:
        return list(b.rank.sort_values().index)
    return sorted(b.mean.index)


def _cell(b: Board, model: str, dataset: str) -> str:
    mean, std = b.mean.loc[model, dataset], b.std.loc[model, dataset]
    if pd.isna(mean):
        return ""
    d = b.digits[dataset]
    return f"{mean:.{d}f} ± {std:.{d}f}" if pd.notna(std) else f"{mean:.{d}f}"


def _aggregate(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["value"]):
        return ""
    if pd.isna(row["ci_low"]):
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def rows(b: Board) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and cells (text, bold) in the page's order, for every format."""
    header = ["model", *b.labels.values()]
    if b.rank is not None:
        header.append("avg. rank")
    header += [f"{group} (norm. IQM, 95 % CI)" for group in b.aggregates]
    body = []
    for model in _order(b):
        line = [(model, False)]
        line += [(_cell(b, model, d), (model, d) in b.best) for d in b.mean.columns]
        if b.rank is not None:
            line.append((f"{b.rank[model]:.2f}", False))
        for table in b.aggregates.values():
            line.append((_aggregate(table.loc[model] if model in table.index else None), False))
        body.append(line)
    return header, body


def to_frame(b: Board) -> pd.DataFrame:
    """leaderboard.csv: the numbers unformatted, one row per model."""
    columns: dict[str, pd.Series] = {}
    for d in b.mean.columns:
        columns[f"{d} mean"], columns[f"{d} std"], columns[f"{d} n_seeds"] = b.mean[d], b.std[d], b.seeds[d]
        columns[f"{d} best"] = pd.Series({m: (m, d) in b.best for m in b.mean.index})
    if b.rank is not None:
        columns["average_rank"] = b.rank
    for group, table in b.aggregates.items():
        for name in ("value", "ci_low", "ci_high"):
            columns[f"{group} {name}"] = table[name].reindex(b.mean.index)
    frame = pd.DataFrame(columns, index=b.mean.index).reindex(_order(b))
    return frame.rename_axis("model").reset_index()


def to_markdown(b: Board) -> str:
    return markdown_table(*rows(b))


def markdown_table(header: list[str], body: list[list[tuple[str, bool]]]) -> str:
    """A Markdown table of (text, bold) cells: bold ones in **, a | inside a cell escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in body:
        cells = [f"**{text}**" if bold and text else text.replace("|", "\\|") for text, bold in line]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(b: Board) -> str:
    header, body = rows(b)
    # a dataset's metric on a line of its own: long metric names would squeeze the scores
    head = "".join(
        f"<th>{html.escape(h.split(' (', 1)[0])}<br><small>{html.escape(h.split(' (', 1)[1][:-1])}</small></th>"
        if " (" in h
        else f"<th>{html.escape(h)}</th>"
        for h in header
    )
    lines = []
    for line in body:
        cells = [f"<td>{'<b>' if bold else ''}{html.escape(text)}{'</b>' if bold else ''}</td>" for text, bold in line]
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def write(b: Board, out: Path) -> list[str]:
    """leaderboard.csv, .md and .tex; the names written."""
    if b.empty:
        return []
    to_frame(b).to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.md").write_text(to_markdown(b))
    header, body = rows(b)
    (out / "leaderboard.tex").write_text(latex.table(header, body, caption=_caption(b)))
    return ["leaderboard.csv", "leaderboard.md", "leaderboard.tex"]


def _caption(b: Board) -> str:
    said = "Test score per task: mean ± standard deviation over seeds; the best per task in bold."
    if b.rank is not None:
        said += " Average rank over the tasks a model was scored on (1 = best)."
    if b.aggregates:
        said += " Normalised aggregate: IQM of the min-max normalised seed scores, with its 95 % CI."
    return said
