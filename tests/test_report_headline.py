"""The report is a results section (issue 26): the leaderboard table at the top (and as .csv, .md and
a .tex that pdflatex compiles), per cell its chosen hyperparameters, trial counts and MLflow run, the
provenance, cost against accuracy, and the tuning analysis per cell. On a real sweep of the stub app
(2 models x 2 tasks, tuned with per-epoch values, repeated, tracked in MLflow's SQLite store), its
Optuna journal and a real Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.build import main
from tests.helpers import run_stub, studies, tracking_args

pytestmark = pytest.mark.duration(60)

GRANT = ["hydra.sweeper.accounting.local_gpus=1", "hydra.sweeper.accounting.local_cpus=3"]
TEX_PACKAGES = ["texlive-latex-base", "texlive-latex-recommended"]  # pdflatex; booktabs


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path, str]:
    """The stub's sweep (task a: lower is better, b: higher) and its report: (sweep, report, stderr)."""
    root = tmp_path_factory.mktemp("headline")
    sweep = root / "sweep"
    result = run_stub(
        sweep,
        "task=a,b",
        "model=x,y",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.repeats=3",
        "steps=3",
        *GRANT,
        *tracking_args(root),
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "report"
    stderr = _report(str(sweep), "--out", str(out), "--bootstrap", "200", "--no-mlflow")
    return sweep, out, stderr


def _report(*argv: str) -> str:
    """bench.report in this process (its stderr), as the other report tests run it."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        main(list(argv))
    return err.getvalue()


def test_the_leaderboard_table_is_the_tables_figures_with_the_best_in_bold(swept):
    _, out, _ = swept
    datasets = pd.read_csv(out / "datasets.csv").set_index(["model", "dataset"])
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    for (model, dataset), row in datasets.iterrows():
        assert board.loc[model, f"{dataset} mean"] == pytest.approx(row["raw_mean"])
        assert board.loc[model, f"{dataset} std"] == pytest.approx(row["raw_std"])
        assert board.loc[model, f"{dataset} n_seeds"] == row["n_seeds"] == 3
    means = datasets["raw_mean"].unstack("dataset")
    # a is lower-is-better: its best is the lower mean; b's the higher
    best = {("a", means["a"].idxmin()), ("b", means["b"].idxmax())}
    assert {(d, m) for m in board.index for d in "ab" if board.loc[m, f"{d} best"]} == best
    ranks = pd.DataFrame({"a": means["a"].rank(), "b": means["b"].rank(ascending=False)}).mean(axis=1)
    assert board["average_rank"].to_dict() == pytest.approx(ranks.to_dict())
    groups = pd.read_csv(out / "groups.csv").set_index("model")
    for name in ("value", "ci_low", "ci_high"):
        assert board[f"All {name}"].to_dict() == pytest.approx(groups[name].to_dict())
    assert list(board.index) == list(groups["value"].sort_values(ascending=False).index)  # best first

    markdown = (out / "leaderboard.md").read_text().splitlines()
    assert markdown[0].startswith("| model | a (score ↓) | b (score ↑) | avg. rank | All (norm. IQM, 95 % CI) |")
    for line in markdown[2:]:
        model, a, b = (cell.strip() for cell in line.strip("|").split("|")[:3])
        assert a.startswith("**") == (("a", model) in best) and b.startswith("**") == (("b", model) in best)


def _pdflatex() -> str:
    """pdflatex, installed with apt (as root) when missing; the test skips when it cannot be."""
    if path := shutil.which("pdflatex"):
        return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("pdflatex is not installed, and installing it needs apt-get as root")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*apt, "install", "-y", "--no-install-recommends", *TEX_PACKAGES]
    for command in (install, [*apt, "update"], install):  # stale package lists: update, try again
        subprocess.run(command, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=900)
        if path := shutil.which("pdflatex"):
            return path
    pytest.skip(f"could not install {' '.join(TEX_PACKAGES)} with apt-get")


def test_leaderboard_tex_compiles_with_booktabs_and_escapes_latex(tmp_path):
    from bench.report import headline, latex

    datasets = pd.DataFrame(
        {
            "model": ["prithvi_tiny [frozen]", "res&net#50 100%", "prithvi_tiny [frozen]", "res&net#50 100%"],
            "dataset": ["burn_scars", "burn_scars", "m-eurosat", "m-eurosat"],
            "metric": ["Multiclass_Jaccard_Index", "Multiclass_Jaccard_Index", "Overall_Accuracy", "Overall_Accuracy"],
            "direction": "maximize",
            "n_seeds": 5,
            "raw_mean": [0.61, 0.55, 0.9, 0.93],
            "raw_std": [0.01, 0.02, 0.005, 0.004],
        }
    )
    groups = pd.DataFrame(
        {"model": datasets["model"].unique(), "group": "Core_$", "value": [0.6, 0.4], "ci_low": 0.1, "ci_high": 0.9}
    )
    board = headline.board(datasets, groups)
    headline.write(board, tmp_path)
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "prithvi\\_tiny [frozen]" in tex and "res\\&net\\#50 100\\%" in tex and "Core\\_\\$" in tex
    assert "\\textbf{0.610 $\\pm$ 0.010}" in tex and "\\textbf{0.930 $\\pm$ 0.004}" in tex
    assert latex.escape("a_b%c&d#e$f{g}h~i^j\\k") == (
        "a\\_b\\%c\\&d\\#e\\$f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k"
    )
    pdflatex = _pdflatex()
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{leaderboard}\n\\end{document}\n"
    )
    result = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
    assert "Missing character" not in (tmp_path / "paper.log").read_text()


def test_each_cell_gets_its_chosen_params_trial_counts_and_mlflow_run(swept, tmp_path):
    from mlflow import MlflowClient

    sweep, out, _ = swept
    table = pd.read_csv(out / "cells.csv").set_index(["model", "dataset"])
    results = pd.read_csv(sweep / "results.csv")
    client = MlflowClient(f"sqlite:///{sweep.parent}/mlflow.db")
    for label, study in studies(sweep).items():
        task, model = (part.split("=")[1] for part in label.split(","))
        row = table.loc[(model, task)]
        best = study.best_trial
        assert row["chosen"] == f"x={best.params['x']:.3g}, y={best.params['y']}"
        assert row["best_value"] == pytest.approx(best.value)
        mine = results[results["cell"] == label]
        for state, column in (("COMPLETE", "completed"), ("PRUNED", "pruned"), ("FAIL", "failed")):
            assert row[column] == (mine["state"] == state).sum()
        run = mine.loc[mine["trial"] == best.number, "mlflow_run_id"].item()
        assert row["mlflow_run_id"] == run and client.get_run(run).info.run_id == run  # a run the store holds
        assert row["mlflow"] == f"run {run}: mlflow ui --backend-store-uri sqlite:///{sweep.parent}/mlflow.db"

    # a tracking server: a link to the run in MLflow's UI (the #/runs/<id> route finds its experiment)
    served = tmp_path / "served"
    shutil.copytree(sweep, served, ignore=shutil.ignore_patterns("report"))
    (served / "mlflow.json").write_text('{"tracking_uri": "https://mlflow.example.org/", "benchmark_run": "b"}')
    _report(str(served), "--out", str(tmp_path / "report"), "--bootstrap", "20", "--no-mlflow")
    linked = pd.read_csv(tmp_path / "report" / "cells.csv")
    assert (linked["mlflow"] == "https://mlflow.example.org/#/runs/" + linked["mlflow_run_id"]).all()
    assert '<a href="https://mlflow.example.org/#/runs/' in (tmp_path / "report" / "report.html").read_text()


def test_provenance_names_the_commands_commit_versions_hardware_and_hours(swept):
    from importlib import metadata

    sweep, out, _ = swept
    facts = pd.read_csv(out / "provenance.csv").set_index("what")["value"]
    assert facts["report command"].startswith(f"python -m bench.report {sweep} --out {out}")
    command = facts["sweep sweep"].replace("'", "").split()
    assert command[:3] == ["python", "stub_app.py", "-m"]  # not bench: the stub app's own sweep
    assert {"task=a,b", "model=x,y", "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"} <= set(command)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert f"commit {head.stdout.strip()}" in facts["bench"] and metadata.version("bench") in facts["bench"]
    for package in ("torch", "terratorch", "lightning", "optuna", "mlflow", "hydra-core"):
        assert f"{package} {metadata.version(package)}" in facts["packages"]
    assert facts["date"].endswith("UTC") and "cores" in facts["CPU (this machine)"]
    spent = sum(pd.read_csv(sweep / name)["gpu_hours"].sum() for name in ("results.csv", "repeats.csv"))
    assert facts["compute spent"].startswith(f"{spent:.3g} GPU-hours, ")


def test_the_cost_front_holds_the_models_no_other_beats_on_both():
    from bench.report import frontier

    groups = pd.DataFrame(
        {
            "model": ["cheap", "dear", "worse", "alone"],
            "group": "All",
            "value": [0.5, 0.9, 0.4, np.nan],
            "ci_low": [0.4, 0.8, 0.3, np.nan],
            "ci_high": [0.6, 1.0, 0.5, np.nan],
        }
    )
    costs = pd.DataFrame(
        {
            "model": ["cheap", "cheap", "dear", "worse", "alone"],
            "gpu_hours": [1.0, 1.0, 5.0, 3.0, 0.1],
            "cpu_hours": 1.0,
        }
    )
    points, why = frontier.points(groups, costs)
    assert why == "" and points.set_index("model")["hours"].to_dict() == {"cheap": 2.0, "dear": 5.0, "worse": 3.0}
    assert points.set_index("model")["on_front"].to_dict() == {"cheap": True, "dear": True, "worse": False}
    no_gpu = costs.assign(gpu_hours=0.0)
    assert set(frontier.points(groups, no_gpu)[0]["unit"]) == {"cpu_hours"}  # no trial held a GPU
    assert frontier.points(groups.assign(value=np.nan), costs)[1].startswith("no normalised aggregate")


def test_the_tuning_analysis_gives_each_cell_its_importances_and_learning_curves(swept):
    from tests.browser import render

    sweep, out, _ = swept
    page = render(out / "report.html")
    assert page.console_errors == [] and page.failed_requests == []
    cells = [alt for alt, _, _ in page.images if alt.startswith("cell ")]
    assert sorted(cells) == ["cell x / a", "cell x / b", "cell y / a", "cell y / b"]
    assert all(width > 300 and height > 100 for alt, width, height in page.images if alt in cells)
    section = page.text.split("Tuning analysis per cell", 1)[1].split("Details", 1)[0]
    importances = [line for line in section.splitlines() if line.startswith("hyperparameter importance")]
    assert len(importances) == 4
    for line in importances:  # fANOVA over both params, shares that sum to 1
        shares = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
        assert set(shares) == {"x", "y"} and sum(map(float, shares.values())) == pytest.approx(1, abs=0.02)
    # the learning curves are the trials' per-epoch values from the journal
    study = studies(sweep)["task=a,model=x"]
    assert all(len(t.intermediate_values) == 3 for t in study.trials if t.state.name == "COMPLETE")
    text = page.text
    assert text.index("Leaderboard") < text.index("Per cell") < text.index("Provenance") < text.index("Tuning analysis")


def test_a_cell_with_one_completed_trial_says_why_it_has_no_importance(tmp_path):
    """A sweep with no repeats: the tuning report alone, and importance that cannot be computed is a
    sentence on the page, not an error."""
    sweep = tmp_path / "sweep"
    result = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=1", "steps=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _report(str(sweep), "--out", str(tmp_path / "report"), "--no-mlflow")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "hyperparameter importance: none (1 completed trial(s): importance needs two completed trials" in html
    assert "No test score yet" in html and not (tmp_path / "report" / "leaderboard.csv").exists()
    assert 'alt="cell x / a"' in html  # its one trial's learning curve and params still drawn


def test_synthetic_tasks_get_no_submission_folder_and_no_leaderboard_objections(swept):
    _, out, stderr = swept
    assert not (out / "submission").exists()
    assert "submission/" not in stderr and "leaderboard wants" not in stderr


def test_a_multi_objective_cell_says_it_has_no_single_choice_nor_importance(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_stub(
        sweep,
        "task=a",
        "second_objective=true",
        "hydra.sweeper.direction=[minimize,minimize]",
        "~task.direction",
        "hydra.sweeper.n_trials=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _report(str(sweep), "--out", str(tmp_path / "report"), "--no-mlflow")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "a multi-objective cell: no single chosen trial (its Pareto front is in best.csv)" in html
    assert "hyperparameter importance: none (a multi-objective cell: importance needs one objective)" in html
    assert pd.read_csv(tmp_path / "report" / "cells.csv")["completed"].tolist() == [3]
