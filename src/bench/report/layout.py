"""report.html's layout: one self-contained page (images inlined as data URIs, no script, no
network), so it opens anywhere and can be attached or archived as is.

Results first, as a paper's results section reads: the leaderboard table, cost against accuracy,
the per-cell table and the provenance fit the first screen or two; the tuning analysis per cell
follows, and the statistics' diagnostics (every table, the figures behind the aggregate) close it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report import cells, headline, protocols
from bench.report.analysis import Cell, importance_text, params_text

STYLE = """
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1.2em; }
th, td { padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f3f3f3; }
table.leaderboard { font-size: 15px; } table.leaderboard td { white-space: nowrap; }
th small { font-weight: normal; color: #555; }
table.provenance td, table.cells td { text-align: left; }
p.note { color: #555; font-size: 13px; margin: 0.3em 0 0.8em; }
img { max-width: 100%; } figcaption { font-size: 13px; color: #555; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: bold; }
"""


@dataclass
class Top:
    """The headline sections, computed by build.py."""

    title: str
    board: headline.Board
    board_notes: list[str]
    files: list[str]  # leaderboard.csv, .md, .tex when written
    frontier: Path | None
    frontier_note: str
    cells: pd.DataFrame
    provenance: pd.DataFrame
    analysis: list[tuple[Cell, Path | None]] = field(default_factory=list)
    side_by_side: protocols.Table | None = None  # one model under several protocols, side by side
    protocol_files: list[str] = field(default_factory=list)  # protocols.csv, .md when written


def _image(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _notes(lines: list[str]) -> str:
    return "".join(f'<p class="note">{html.escape(line)}</p>' for line in lines)


def _table(frame: pd.DataFrame, caption: str) -> str:
    body = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    return f"<h3>{html.escape(caption)}</h3>\n{body}"


def _headline(top: Top) -> str:
    parts = ["<h2>Leaderboard</h2>"]
    if top.board.empty:
        parts.append(_notes(top.board_notes))
    else:
        parts.append(headline.to_html(top.board))
        parts.append(_notes(top.board_notes))
        links = " ".join(f'<a href="{name}">{name}</a>' for name in top.files)
        parts.append(f'<p class="note">Also as {links}.</p>')
    if top.side_by_side is not None:
        parts.append("<h3>Protocols side by side</h3>")
        parts.append(protocols.to_html(top.side_by_side))
        links = " ".join(f'<a href="{name}">{name}</a>' for name in top.protocol_files)
        parts.append(
            '<p class="note">Per model and task, its test score (mean ± standard deviation over seeds) under '
            f"each protocol it ran; the best per row in bold. Also as {links}.</p>"
        )
    parts.append("<h2>Cost against accuracy</h2>")
    if top.frontier is not None:
        parts.append(
            _image(
                top.frontier,
                "frontier",
                "Compute per model against its normalised aggregate (95 % CI); stars: the front",
            )
        )
    else:
        parts.append(_notes([f"No figure: {top.frontier_note}."]))
    if not top.cells.empty:
        parts.append("<h2>Per cell</h2>")
        parts.append(cells.to_html(top.cells))
    parts.append("<h2>Provenance</h2>")
    rows = "".join(
        f"<tr><th>{html.escape(str(r.what))}</th><td>{html.escape(str(r.value))}</td></tr>"
        for r in top.provenance.itertuples()
    )
    parts.append(f'<table class="provenance">{rows}</table>')
    return "\n".join(parts)


def _analysis(top: Top, tuning: Path | None, caption: str) -> str:
    if tuning is None and not top.analysis:
        return ""
    parts = ["<h2>Tuning analysis per cell</h2>"]
    if tuning is not None:
        parts.append(_image(tuning, "tuning", caption))
    for cell, image in top.analysis:
        parts.append(f"<h3>{html.escape(cell.name)}</h3>")
        chosen = params_text(cell.params)
        if chosen:
            said = [f"chosen (trial {cell.best_trial}): {chosen}"]
        elif cell.study is not None and len(cell.study.directions) > 1:
            said = ["a multi-objective cell: no single chosen trial (its Pareto front is in best.csv)"]
        else:
            said = ["no completed trial: nothing chosen"]
        parts.append(_notes([*said, importance_text(cell)]))
        if image is not None:
            parts.append(
                _image(
                    image,
                    f"cell {cell.name}",
                    "Learning curves (thick: the chosen trial; dotted: "
                    "pruned) and the most important parameters against the validation value",
                )
            )
    return "\n".join(parts)


def write_html(
    path: Path,
    top: Top,
    tuning: Path | None,
    notes: list[str],
    tables: list[tuple[str, pd.DataFrame]],
    images: dict[str, tuple[str, Path]],
) -> Path:
    from bench.report.page import PLOTS

    figures = "".join(_image(image, name, caption) for name, (caption, image) in images.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(top.title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(top.title)}</h1>
{_headline(top)}
{_analysis(top, tuning, PLOTS["tuning"])}
<h2>Details</h2>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
{figures}
{"".join(_table(frame, caption) for caption, frame in tables)}
</body></html>
"""
    path.write_text(page)
    return path
