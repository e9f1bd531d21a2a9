"""Protocols side by side: one model's test scores under each protocol it ran (full_ft, frozen,
linear_probe, knn: scores.csv's frozen_or_full_ft), on the page after the leaderboard table and as
protocols.csv and protocols.md.

Rows are a base model x a task: the model's name without its protocol label (merge.py names
`prithvi [knn, none]` and `prithvi [full_ft, UNetDecoder]` apart; both are `prithvi` here), and
without its decoder label too where that still leaves one model per task and protocol (a probe
trains no decoder, so its decoder is `none`: the decoder then only restates the protocol). Only base
models that ran some task under two protocols or more get rows, and the table exists only when one
did. Each cell is the leaderboard's: the raw test mean ± standard deviation over seeds, with the
leaderboard's decimals per task; the best per row in bold (the task's direction), none among one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.headline import ARROW, markdown_table
from hydra_plugins.bench_sweeper.api import MINIMIZE

ORDER = ["full_ft", "frozen", "linear_probe", "knn"]  # the columns' order; any other protocol after, by name


@dataclass
class Table:
    """What the table shows, as numbers; the writers below only format it."""

    protocols: list[str]  # the columns
    mean: pd.DataFrame  # (model, dataset) x protocol
    std: pd.DataFrame
    seeds: pd.DataFrame
    best: set[tuple[str, str, str]]  # (model, dataset, protocol) of the best mean per row
    labels: dict[str, str]  # dataset -> "burns (mIoU ↑)"
    digits: dict[str, int]  # dataset -> decimals, the leaderboard's


def _strip(name: str, labels: list[str]) -> str:
    """`name` without the first of each label among its bracketed parts."""
    backbone, bracket, rest = name.partition(" [")
    if not bracket or not rest.endswith("]"):
        return name
    parts = rest[:-1].split(", ")
    for label in labels:
        if label in parts:
            parts.remove(label)
    return f"{backbone} [{', '.join(parts)}]" if parts else backbone


def _bases(experiments: pd.DataFrame) -> pd.Series:
    """Per (model, dataset, protocol, decoder) row: its base model's name."""
    both = pd.Series(
        [_strip(m, [p, d]) for m, p, d in experiments[["model", "protocol", "decoder"]].itertuples(index=False)],
        index=experiments.index,
    )
    alone = pd.Series(
        [_strip(m, [p]) for m, p in experiments[["model", "protocol"]].itertuples(index=False)],
        index=experiments.index,
    )
    # The decoder's label goes only where no two models of one task and protocol would then share a name.
    clash = experiments.assign(base=both).groupby(["base", "dataset", "protocol"])["model"].transform("nunique") > 1
    return both.where(~clash, alone)


def table(datasets: pd.DataFrame, scores: pd.DataFrame, digits: dict[str, int]) -> Table | None:
    """From datasets.csv's rows, scores.csv's (which protocol and decoder each model x dataset ran)
    and the leaderboard's decimals; None when no base model ran a task under two protocols."""
    if datasets.empty or "frozen_or_full_ft" not in scores.columns:
        return None
    experiments = (
        scores.assign(
            protocol=scores["frozen_or_full_ft"].fillna("full_ft").astype(str),
            decoder=scores["decoder"].fillna("").astype(str) if "decoder" in scores.columns else "",
            model=scores["model"].astype(str),
            dataset=scores["dataset"].astype(str),
        )[["model", "dataset", "protocol", "decoder"]]
        .drop_duplicates(["model", "dataset"])
        .reset_index(drop=True)
    )
    experiments["base"] = _bases(experiments)
    rows = experiments.merge(datasets.assign(model=datasets["model"].astype(str)), on=["model", "dataset"])
    spread = rows.groupby(["base", "dataset"])["protocol"].nunique()
    compared = set(spread[spread > 1].index.get_level_values("base"))
    rows = rows[rows["base"].isin(compared)]
    if rows.empty:
        return None
    present = set(rows["protocol"])
    protocols = [p for p in ORDER if p in present] + sorted(present - set(ORDER))
    index = ["base", "dataset"]
    mean, std, seeds = (
        rows.pivot(index=index, columns="protocol", values=v)
        .reindex(columns=protocols)
        .rename_axis(["model", "dataset"])
        for v in ("raw_mean", "raw_std", "n_seeds")
    )
    first = rows.groupby("dataset").first()
    lower = {d: first.loc[d, "direction"] == MINIMIZE for d in first.index}
    labels = {d: f"{d} ({first.loc[d, 'metric']} {ARROW[lower[d]]})" for d in first.index}
    best = set()
    for (model, dataset), line in mean.iterrows():
        known = line.dropna()
        if len(known) > 1:  # a best among one protocol says nothing
            top = known.min() if lower[dataset] else known.max()
            best |= {(model, dataset, p) for p in known.index[known == top]}
    return Table(protocols, mean, std, seeds, best, labels, {d: digits.get(d, 3) for d in first.index})


def _cell(t: Table, key: tuple[str, str], protocol: str) -> str:
    mean, std = t.mean.loc[key, protocol], t.std.loc[key, protocol]
    if pd.isna(mean):
        return ""
    d = t.digits[key[1]]
    return f"{mean:.{d}f} ± {std:.{d}f}" if pd.notna(std) else f"{mean:.{d}f}"


def rows(t: Table) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and cells (text, bold), by model then task, for every format."""
    header = ["model", "task", *t.protocols]
    body = []
    for key in sorted(t.mean.index):
        line = [(key[0], False), (t.labels[key[1]], False)]
        line += [(_cell(t, key, p), (*key, p) in t.best) for p in t.protocols]
        body.append(line)
    return header, body


def to_frame(t: Table) -> pd.DataFrame:
    """protocols.csv: the numbers unformatted, one row per model x task."""
    columns: dict[str, pd.Series] = {}
    for p in t.protocols:
        columns[f"{p} mean"], columns[f"{p} std"], columns[f"{p} n_seeds"] = t.mean[p], t.std[p], t.seeds[p]
        columns[f"{p} best"] = pd.Series({key: (*key, p) in t.best for key in t.mean.index}).reindex(t.mean.index)
    return pd.DataFrame(columns, index=t.mean.index).sort_index().reset_index()


def to_markdown(t: Table) -> str:
    return markdown_table(*rows(t))


def to_html(t: Table) -> str:
    header, body = rows(t)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for line in body:
        cells = [f"<td>{'<b>' if bold else ''}{html.escape(text)}{'</b>' if bold else ''}</td>" for text, bold in line]
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="leaderboard protocols"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def write(t: Table | None, out: Path) -> list[str]:
    """protocols.csv and .md; the names written."""
    if t is None:
        return []
    to_frame(t).to_csv(out / "protocols.csv", index=False)
    (out / "protocols.md").write_text(to_markdown(t))
    return ["protocols.csv", "protocols.md"]
