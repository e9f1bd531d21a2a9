"""Tuning analysis per cell, from the sweep's Optuna journal: the chosen hyperparameters,
hyperparameter importance (Optuna's get_param_importances, fANOVA, seeded), and one figure per
cell with its trials' learning curves (the validation value each epoch reported for pruning) and
its parameters against the metric.

Only the journal holds a trial's per-epoch values and its params' distributions (log scale,
choices); results.csv has the rest, so a sweep whose journal is elsewhere (a database storage) or
absent (an mlflow: input) gets its chosen params from results.csv and a sentence instead of the
importances and curves. Importance needs two completed trials whose params differ; a cell that has
fewer, or a multi-objective one, gets a sentence too, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.inputs import latest
from hydra_plugins.bench_sweeper.api import MAXIMIZE

JOURNAL = "optuna.journal"
PARAM_PANELS = 2  # the most important params get a panel each


@dataclass
class Cell:
    """One tuned cell: its rows of results.csv (latest study version) and, when read, its study."""

    name: str  # "model / dataset", as tuning.csv's curve
    sweep: str
    rows: pd.DataFrame
    study: Any = None  # optuna.Study
    importance: dict[str, float] = field(default_factory=dict)
    why_no_importance: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # the chosen (best) trial's
    best_trial: int | None = None


def _storage(sweep: Path | None) -> Any:
    """The sweep's journal, read as Optuna reads it; None when it has none in the sweep dir."""
    if sweep is None or not (sweep / JOURNAL).is_file():
        return None
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(sweep / JOURNAL)))


def _maximize(rows: pd.DataFrame) -> bool:
    return "direction" not in rows.columns or rows["direction"].iloc[0] == MAXIMIZE


def _from_results(cell: Cell) -> None:
    """The chosen params from results.csv: the best completed row's hparams.* columns."""
    done = cell.rows[cell.rows["state"] == "COMPLETE"].dropna(subset=["value"])
    if done.empty:
        return
    best = done.loc[done["value"].idxmax() if _maximize(done) else done["value"].idxmin()]
    cell.best_trial = int(best["trial"])
    cell.params = {c: best[c] for c in done.columns if c.startswith("hparams.") and pd.notna(best[c])}


def _importance(cell: Cell) -> None:
    import optuna

    study = cell.study
    if len(study.directions) > 1:
        cell.why_no_importance = "a multi-objective cell: importance needs one objective"
        return
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = {name for t in done for name in t.params if len({repr(u.params.get(name)) for u in done}) > 1}
    if len(done) < 2 or not varying:
        cell.why_no_importance = (
            f"{len(done)} completed trial(s){'' if len(done) < 2 else ' with the same params'}: importance needs "
            "two completed trials whose params differ"
        )
        return
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        cell.importance = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:  # what Optuna raises for studies it cannot evaluate
        cell.why_no_importance = f"Optuna could not compute it ({exc})"


def cells(tuning: pd.DataFrame, sweep_dirs: list[Path], names: pd.DataFrame) -> list[Cell]:
    """Every tuned cell of the inputs, named as tuning.csv names it (names: its sweep, cell, curve)."""
    if tuning.empty or "state" not in tuning.columns:
        return []
    rows = tuning[latest(tuning)]
    curve = names.set_index(["sweep", "cell"])["curve"].to_dict() if not names.empty else {}
    dirs = {d.name: d for d in sweep_dirs}
    storages: dict[str, Any] = {}
    found = []
    logging.getLogger("optuna").setLevel(logging.WARNING)  # load_study's notes are no news here
    for (sweep, cell), own in rows.sort_values("trial").groupby(["sweep", "cell"], sort=True):
        item = Cell(curve.get((sweep, cell), str(cell)), str(sweep), own.reset_index(drop=True))
        if sweep not in storages:
            storages[sweep] = _storage(dirs.get(sweep))
        storage, study_name = storages[sweep], str(own["study"].iloc[0]) if "study" in own.columns else ""
        if storage is not None and study_name:
            import optuna

            try:
                item.study = optuna.load_study(study_name=study_name, storage=storage)
            except KeyError:  # a results.csv that names a study this journal does not hold
                item.study = None
        if item.study is None:
            _from_results(item)
            item.why_no_importance = f"no Optuna journal of this cell in the sweep dir ({JOURNAL})"
        else:
            if len(item.study.directions) == 1 and item.study.get_trials(deepcopy=False, states=_complete()):
                best = item.study.best_trial
                item.params, item.best_trial = dict(best.params), best.number
            _importance(item)
        found.append(item)
    return found


def _complete() -> tuple:
    import optuna

    return (optuna.trial.TrialState.COMPLETE,)


def importance_text(cell: Cell) -> str:
    if not cell.importance:
        return f"hyperparameter importance: none ({cell.why_no_importance})"
    ranked = ", ".join(f"{name} {value:.2f}" for name, value in cell.importance.items())
    return f"hyperparameter importance (fANOVA, Optuna): {ranked}"


def _learning_curves(ax: Any, cell: Cell) -> None:
    import optuna

    best = cell.best_trial
    for trial in cell.study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        if not steps:
            continue
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        ax.plot(
            steps,
            [trial.intermediate_values[s] for s in steps],
            linestyle=":" if pruned else "-",
            marker="x" if pruned else ".",
            linewidth=2.5 if trial.number == best else 1.0,
            label=f"trial {trial.number}{' (pruned)' if pruned else ''}{' (chosen)' if trial.number == best else ''}",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation value")
    ax.set_title("learning curves", fontsize=9)
    if ax.has_data():
        # A fixed place ("best" costs a search per figure), where the curves are not: they rise
        # toward a maximised value and fall toward a minimised one.
        ax.legend(fontsize=6, loc="lower right" if _maximize(cell.rows) else "upper right")


def _param_panel(ax: Any, cell: Cell, param: str) -> None:
    column = param if param in cell.rows.columns else f"hparams.{param}"
    if column not in cell.rows.columns:
        return
    for state, style in (("COMPLETE", {}), ("PRUNED", {"facecolors": "none"})):
        rows = cell.rows[(cell.rows["state"] == state)].dropna(subset=["value", column])
        if not rows.empty:
            ax.scatter(rows[column], rows["value"], label=state.lower(), edgecolors="tab:blue", **style)
    values = pd.to_numeric(cell.rows[column], errors="coerce").dropna()
    if len(values) and (values > 0).all() and values.max() / values.min() > 20:
        ax.set_xscale("log")  # learning rates and the like span decades
    name = param.removeprefix("hparams.")
    ax.set_xlabel(name, fontsize=8)
    ax.set_title(f"{name} against the metric", fontsize=9)
    if ax.has_data():
        ax.legend(fontsize=6, loc="lower right")


def plot_cell(cell: Cell, path: Path) -> Path | None:
    """The cell's figure: learning curves (journal only) and its most important params. Drawn with
    fixed margins: a report has a figure per cell, and tight layouts cost twice the drawing."""
    import matplotlib.pyplot as plt

    from bench.report.page import figure

    params = list(cell.importance) or sorted(cell.params)
    panels = (1 if cell.study is not None else 0) + min(PARAM_PANELS, len(params))
    if panels == 0:
        return None
    fig, axes = figure(1, panels, width=3.4, height=2.8)
    it = iter(axes)
    if cell.study is not None:
        _learning_curves(next(it), cell)
    for ax, param in zip(it, params):
        _param_panel(ax, cell, param)
    drawn = any(ax.has_data() for ax in fig.axes)
    if drawn:
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path if drawn else None


def params_text(params: dict[str, Any]) -> str:
    def short(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float | np.floating) else str(value)

    return ", ".join(f"{name.removeprefix('hparams.')}={short(v)}" for name, v in params.items())
