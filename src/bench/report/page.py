"""The report's figures (PNG files) and report.html: one self-contained page, images inlined as
data URIs, no script, no network, so it opens anywhere and can be attached or archived as is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.report import layout
from bench.report.layout import Top

if TYPE_CHECKING:  # matplotlib itself is imported only when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOTS = {
    "groups": "Aggregate IQM per model and group, 95 % CI",
    "datasets": "Per-dataset normalised IQM per model, 95 % CI",
    "raw": "Per-dataset raw IQM per model (the metric's own units), 95 % CI: no normalised score to show",
    "profile": "Performance profile: share of seed scores above each normalised score",
    "tuning": "Tuning curves: best validation value by trial (dashed, triangles: still improving in the last quarter)",
}


def figure(rows: int, cols: int, width: float = 4.0, height: float = 3.0) -> tuple[Figure, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes.ravel()


def save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        if not ax.has_data():
            ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # long model names: the image grows to hold them
    plt.close(fig)
    return path


def _interval_plot(
    ax: Axes, table: pd.DataFrame, value: str, title: str, bounds: tuple[str, str] = ("ci_low", "ci_high")
) -> None:
    table = table.sort_values("model")
    y = np.arange(len(table))
    low = (table[value] - table[bounds[0]]).clip(lower=0).fillna(0)
    high = (table[bounds[1]] - table[value]).clip(lower=0).fillna(0)
    ax.errorbar(table[value], y, xerr=[low, high], fmt="o", capsize=3)
    ax.set_yticks(y, table["model"], fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def _width(models: pd.Series, least: float) -> float:
    """Room for the longest model name beside each panel (names carry their experiment and input)."""
    return max(least, 3.0 + 0.075 * max((len(str(m)) for m in models), default=0))


def plot_groups(groups: pd.DataFrame, path: Path) -> Path:
    scored = groups.dropna(subset=["value"])
    names = list(dict.fromkeys(scored["group"])) or ["(none)"]
    fig, axes = figure(
        1, len(names), width=_width(scored["model"], 4.5), height=0.35 * max(4, scored["model"].nunique()) + 1
    )
    for ax, name in zip(axes, names):
        if name in set(scored["group"]):
            _interval_plot(ax, scored[scored["group"] == name], "value", name)
    return save(fig, path)


def plot_datasets(datasets: pd.DataFrame, path: Path, raw: bool = False) -> Path:
    value, bounds = ("raw_iqm", ("raw_ci_low", "raw_ci_high")) if raw else ("normalized_iqm", ("ci_low", "ci_high"))
    datasets = datasets.dropna(subset=[value])
    names = sorted(datasets["dataset"].unique())
    cols = max(1, min(4, len(names)))
    fig, axes = figure(
        max(1, -(-len(names) // cols)),
        cols,
        width=_width(datasets["model"], 4.0),
        height=0.3 * max(4, datasets["model"].nunique()) + 1,
    )
    for ax, name in zip(axes, names):
        _interval_plot(ax, datasets[datasets["dataset"] == name], value, name, bounds)
    return save(fig, path)


def plot_profile(profile: pd.DataFrame, path: Path) -> Path:
    fig, (ax,) = figure(1, 1, width=6, height=4)
    for model, rows in profile.groupby("model", sort=True):
        ax.plot(rows["tau"], rows["fraction"], label=model)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of seed scores > τ")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_tuning(curves: pd.DataFrame, flags: pd.DataFrame, path: Path) -> Path:
    fig, (ax,) = figure(1, 1, width=7, height=4)
    improving = set(flags.loc[flags["still_improving"], "curve"]) if not flags.empty else set()
    for name, rows in curves.groupby("curve", sort=True):
        # Each curve keeps its own colour (a colour that replaced it would hide which cell it is):
        # still improving is said by a dashed line, a triangle marker and the label.
        flagged = name in improving
        ax.plot(
            rows["position"],
            rows["best_so_far"],
            linestyle="--" if flagged else "-",
            marker="^" if flagged else ".",
            label=f"{name} (still improving)" if flagged else name,
        )
    ax.set_xlabel("finished trial")
    ax.set_ylabel("best validation value so far")
    if not curves.empty:
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return save(fig, path)


def write_report(
    out: Path,
    data: pd.DataFrame,
    datasets: pd.DataFrame,
    groups: pd.DataFrame,
    pairs: pd.DataFrame,
    flags: pd.DataFrame,
    curves: pd.DataFrame,
    failed: pd.DataFrame,
    costs: pd.DataFrame | None,
    notes: list[str],
    top: Top,
) -> Path:
    """The figures that have something to show, and report.html: the headline sections (top), then
    the details (the statistics' figures and every table)."""
    from bench.report.costs import cost_matrix
    from bench.report.stats import performance_profile

    images = {}
    if groups["value"].notna().any():
        images["groups"] = plot_groups(groups, out / "groups.png")
    normalised = datasets["normalized_iqm"].notna().any()
    if not datasets.empty:
        images["datasets" if normalised else "raw"] = plot_datasets(datasets, out / "datasets.png", raw=not normalised)
    if normalised:
        values = data["normalized"].dropna()
        # Unclipped scores may leave [0, 1]: the thresholds span whatever the scores span.
        taus = np.linspace(min(0.0, values.min()), max(1.0, values.max()), 101)
        images["profile"] = plot_profile(performance_profile(data, taus), out / "profile.png")
    tuning = plot_tuning(curves, flags, out / "tuning.png") if not curves.empty else None
    unnormalised = ["normalized_iqm", "ci_low", "ci_high"] if not normalised else []
    tables = [
        ("Groups", groups if groups["value"].notna().any() else groups.iloc[:0]),
        ("Datasets", datasets.drop(columns=unnormalised)),
        ("Probability of improvement", pairs),
        ("Failed repeats (no test score)", failed),
        ("Tuning", flags.drop(columns=["sweep"])),
    ]
    tables = [(caption, frame) for caption, frame in tables if not frame.empty]
    if costs is not None:
        tables.append(cost_matrix(costs))
    return layout.write_html(
        out / "report.html", top, tuning, notes, tables, {k: (PLOTS[k], v) for k, v in images.items()}
    )
