"""hydra-optuna-sweeper parity: its three example apps (tests/stub_app, MIT, see LICENSE-hydra; as upstream main has them) run
unchanged but for the sweeper's name; every sampler group it has; its bad inputs get a sentence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest

from tests.helpers import STUB, read_csv, run_stub, studies
from tests.warm_cli import python_script

pytestmark = pytest.mark.duration(55)

EXAMPLES = STUB.parent


def run_example(script: str, sweep_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return python_script(
        EXAMPLES / script, "-m", f"hydra.sweep.dir={sweep_dir}", *args, timeout=timeout, cwd=sweep_dir.parent
    )


def sampler_of(sweep_dir: Path) -> str:
    """The sampler the sweep was configured with (its multirun.yaml)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(sweep_dir / "multirun.yaml").hydra.sweeper.sampler._target_


def dominates(a: list[float], b: list[float]) -> bool:
    """a is no worse than b in every objective (all minimised) and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_custom_search_space_example_records_its_conditional_params(tmp_path):
    result = run_example("custom-search-space-objective.py", tmp_path / "sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert len(rows) == 20 and {r["state"] for r in rows} == {"COMPLETE"}
    for row in rows:
        w, x, y, z = (float(row[k]) for k in "wxyz")  # configure()'s params are columns like the others
        assert abs(z - x) <= 0.5 and 0.0 <= w <= 1.0  # max_z_difference_from_x, and w in [0, 1]
        assert float(row["value"]) == pytest.approx(w**2 + x**2 + y**2 + z**2)  # the job got them all
    (study,) = studies(tmp_path / "sweep").values()
    assert all(set(t.params) == {"+w", "x", "y", "z"} for t in study.trials)  # as configure() named it
    assert "z=" in result.stdout.split("Best per cell")[1]  # the best row shows configure()'s params too


def test_multi_objective_example_gives_a_non_dominated_front_per_cell(tmp_path):
    result = run_example("multi-objective.py", tmp_path / "sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path / "sweep").values()
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert sampler_of(tmp_path / "sweep") == "optuna.samplers.NSGAIISampler"
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert len(rows) == 20 and {r["state"] for r in rows} == {"COMPLETE"}
    points = {r["trial"]: [float(r["value_0"]), float(r["value_1"])] for r in rows}
    for row in rows:  # Binh and Korn, computed by the job from its own x and y
        x, y = float(row["x"]), float(row["y"])
        assert points[row["trial"]] == pytest.approx([4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])
    front = read_csv(tmp_path / "sweep" / "best.csv")
    on_front = {r["best_trial"] for r in front}
    assert len(on_front) >= 2 and all(r["direction"] == "minimize,minimize" for r in front)
    for trial, point in points.items():  # best.csv is exactly the non-dominated trials
        dominated = any(dominates(other, point) for other in points.values())
        assert (trial in on_front) == (not dominated), trial


def test_sphere_runs_with_every_sampler_group(tmp_path):
    # n_startup_trials=2 so that GP and TPE fit a model within the 5 trials.
    for sampler, expected, extra in (
        ("tpe", "TPESampler", ["hydra.sweeper.sampler.n_startup_trials=2"]),
        ("random", "RandomSampler", []),
        ("cmaes", "CmaEsSampler", []),
        ("qmc", "QMCSampler", []),
        ("grid", "GridSampler", []),
        ("nsgaii", "NSGAIISampler", ["hydra.sweeper.sampler.population_size=2"]),
        ("gp", "GPSampler", ["hydra.sweeper.sampler.n_startup_trials=2"]),
    ):
        expected = f"optuna.samplers.{expected}"
        sweep = tmp_path / sampler
        result = python_script(
            EXAMPLES / "sphere" / "sphere.py",
            "-m",
            f"hydra.sweep.dir={sweep}",
            f"hydra/sweeper/sampler={sampler}",
            "hydra.sweeper.n_trials=5",
            *extra,
            timeout=300,
        )
        assert result.returncode == 0, (sampler, result.stderr[-3000:])
        assert sampler_of(sweep) == expected
        rows = read_csv(sweep / "results.csv")
        assert len(rows) == 5 and {r["state"] for r in rows} == {"COMPLETE"}, sampler
        if sampler == "grid":  # every point once: no two trials share one
            assert len({(r["x"], r["y"]) for r in rows}) == 5


def test_the_grid_sampler_runs_a_small_grid_once_and_stops(tmp_path):
    result = python_script(
        EXAMPLES / "sphere" / "sphere.py",
        "-m",
        f"hydra.sweep.dir={tmp_path / 's'}",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=50",
        "x=choice(-1,0,1)",
        "y=choice(0,5)",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "s" / "results.csv")
    assert sorted((int(float(r["x"])), int(float(r["y"]))) for r in rows) == [
        (x, y) for x in (-1, 0, 1) for y in (0, 5)
    ]


@pytest.mark.parametrize(
    "script, args, words",
    [
        # a direction list longer than what the job returns: the cell stops at its first trial
        ("multi-objective.py", ["hydra.sweeper.direction=[minimize,minimize,minimize]"], "the job returned 2 value(s)"),
        (
            "sphere/sphere.py",
            ["hydra.sweeper.direction=[minimize,maximize]", "hydra/sweeper/pruner=median"],
            "which Optuna cannot prune, and a pruner is set: use hydra/sweeper/pruner=none",
        ),
        (
            "sphere/sphere.py",
            ["+hydra.sweeper.custom_search_space=no_such_module.configure"],
            "hydra.sweeper.custom_search_space='no_such_module.configure' cannot be imported",
        ),
        (
            "sphere/sphere.py",
            ["hydra/sweeper/sampler=grid", "z=interval(0, 1)"],
            "the grid sampler needs a finite set of values for every searched param, and z is continuous",
        ),
    ],
)
def test_bad_parity_input_gets_a_sentence(tmp_path, script, args, words):
    sweep = tmp_path / "sweep"
    result = run_example(script, sweep, *args)
    assert result.returncode != 0 and words in result.stderr + result.stdout, (result.stdout + result.stderr)[-3000:]
    if "returned" not in words:  # refused before anything was created
        assert not sweep.exists()


def test_a_multi_objective_cell_gets_its_front_in_mlflow(tmp_path):
    from mlflow import MlflowClient

    from tests.helpers import run_tracked_stub, tree

    result = run_tracked_stub(
        tmp_path,
        "task=a,b",
        "second_objective=true",
        "hydra.sweeper.direction=[minimize,minimize]",
        "~task.direction",
        "hydra.sweeper.n_trials=6",
        "hydra/sweeper/sampler=nsgaii",
        "hydra.sweeper.sampler.population_size=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    best = read_csv(tmp_path / "sweep" / "best.csv")
    for cell in tree(client)["cell"]:
        label = cell.data.tags["bench.cell"]
        path = client.download_artifacts(cell.info.run_id, "pareto_front.json", str(tmp_path / label))
        table = json.loads(Path(path).read_text())
        mine = [r for r in best if r["cell"] == label]
        assert sorted(row[0] for row in table["data"]) == sorted(int(r["best_trial"]) for r in mine)
        assert table["columns"][:3] == ["trial", "objective_0", "objective_1"]
        assert cell.data.metrics["front_size"] == len(mine) >= 1
    for trial in tree(client)["trial"]:
        assert {"objective_0", "objective_1"} <= set(trial.data.metrics)


def test_a_multi_objective_sweep_resumes_and_counts_failures_like_any_other(tmp_path):
    # Trials with x > 0.5 fail; max_failure_rate=0.5 lets the cell absorb them, replacing each.
    args = [
        "task=a",
        "model=x,y",
        "second_objective=true",
        "hydra.sweeper.direction=[minimize,minimize]",
        "~task.direction",
        "fail_above=0.5",
        "hydra.sweeper.max_failure_rate=0.5",
        "hydra.sweeper.n_jobs=1",
    ]
    first = run_stub(tmp_path, *args, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_stub(tmp_path, *args, "hydra.sweeper.n_trials=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for label, study in studies(tmp_path).items():
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        failed = [t for t in study.trials if t.state.name == "FAIL"]
        assert len(complete) == 6 and all(t.params["x"] <= 0.5 for t in complete), label
        assert all(t.params["x"] > 0.5 for t in failed) and len(failed) <= 3, label
        assert all(len(t.values) == 2 for t in complete)


def test_a_multi_objective_cell_whose_failures_pass_max_failure_rate_stops(tmp_path):
    # Every trial with x > -1 fails; at max_failure_rate=0.25 of 4 trials the cell stops at its second failure.
    result = run_stub(
        tmp_path,
        "task=a",
        "second_objective=true",
        "hydra.sweeper.direction=[minimize,minimize]",
        "~task.direction",
        "fail_above=-1",
        "hydra.sweeper.max_failure_rate=0.25",
        "hydra.sweeper.n_trials=4",
    )
    assert result.returncode != 0
    assert "2 failed trials exceed max_failure_rate=0.25 x n_trials=4" in result.stdout + result.stderr
    (study,) = studies(tmp_path).values()
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]  # stopped, not replaced without end
