"""The bench sweeper, driven through a tiny non-torch Hydra app (tests/stub_app) in subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.helpers import STUB, read_csv, run_in_terminal, run_stub, states, studies

pytestmark = pytest.mark.duration(75)


def test_two_tasks_by_two_models_give_four_studies_of_n_trials(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "model=x,y", "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr[-3000:]
    found = studies(tmp_path)
    assert sorted(found) == [f"task={t},model={m}" for t in "ab" for m in "xy"]
    sweep_id = json.loads((tmp_path / "sweep.json").read_text())["sweep_id"]
    for label, study in found.items():
        assert study.study_name == f"bench[{label}]@{sweep_id}"
        assert states(study) == ["COMPLETE"] * 4
    rows = read_csv(tmp_path / "results.csv")
    assert len(rows) == 16
    assert {(r["task"], r["model"]) for r in rows} == {(t, m) for t in "ab" for m in "xy"}
    assert {"cell", "metric", "trial", "state", "value", "duration_s", "job_dir", "mlflow_run_id", "x", "y"} <= set(
        rows[0]
    )
    # Every trial ran in its own Hydra job directory, numbered without collisions.
    assert sorted(int(r["job_num"]) for r in rows) == list(range(16))
    assert all(Path(r["job_dir"]).is_dir() for r in rows)
    best = read_csv(tmp_path / "best.csv")
    assert len(best) == 4 and "Best per cell" in result.stdout


def test_every_row_names_task_model_and_metric_even_when_not_swept(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=2").returncode == 0
    for name in ("results.csv", "best.csv"):
        rows = read_csv(tmp_path / name)
        assert {(r["task"], r["model"], r["metric"]) for r in rows} == {("a", "x", "score"), ("b", "x", "score")}


def test_metric_and_direction_come_from_each_cell(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=3").returncode == 0
    found = studies(tmp_path)
    assert found["task=a"].direction == optuna.study.StudyDirection.MINIMIZE
    assert found["task=b"].direction == optuna.study.StudyDirection.MAXIMIZE
    best = {r["cell"]: r for r in read_csv(tmp_path / "best.csv")}
    assert best["task=a"]["direction"] == "minimize" and best["task=b"]["direction"] == "maximize"
    assert float(best["task=a"]["best_value"]) == min(t.value for t in found["task=a"].trials)


def test_cells_interleave_and_trials_get_their_own_parameters(tmp_path):
    assert run_stub(tmp_path, "task=a,b", "hydra.sweeper.n_trials=3").returncode == 0
    rows = sorted(read_csv(tmp_path / "results.csv"), key=lambda r: int(r["job_num"]))
    # Least-done cell first: a, b, a, b, ... rather than all of a then all of b.
    assert [r["task"] for r in rows] == ["a", "b", "a", "b", "a", "b"]
    for r in rows:
        config = (Path(r["job_dir"]) / ".hydra" / "config.yaml").read_text()
        assert f"x: {r['x']}" in config
        assert "study: bench[task=" in config  # the trial node reached the job


def test_cells_can_be_declared_in_config_and_the_command_line_replaces_them(tmp_path):
    result = run_stub(
        tmp_path,
        "+hydra.sweeper.cells.task=[a,b]",
        "+hydra.sweeper.cells.model='x,y'",
        "model=y",
        "hydra.sweeper.n_trials=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(studies(tmp_path)) == ["task=a", "task=b"]  # model=y pinned on the command line
    assert {r["model"] for r in read_csv(tmp_path / "results.csv")} == {"y"}


def test_hydra_optuna_sweeper_example_works_after_switching_sweeper(tmp_path):
    """hydra-optuna-sweeper's sphere example run as its README says, `python sphere.py -m`, with no
    override: same keys, grammar and app, `bench` as the sweeper; Hydra's default sweep dir."""
    result = subprocess.run(
        [sys.executable, str(STUB.parent / "sphere" / "sphere.py"), "-m"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = [p.parent for p in tmp_path.glob("multirun/*/*/sweep.json")]
    (study,) = studies(sweep).values()
    assert study.study_name.startswith("sphere[default]@")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # from hydra.sweeper.direction
    assert len(study.trials) == 20
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        assert t.params["x"] in [-5.5 + 0.5 * i for i in range(22)]  # range(-5.5, 5.5, step=0.5)
        assert t.params["y"] in (-5, 0, 5)
        assert t.value == t.params["x"] ** 2 + t.params["y"] ** 2
    assert min(t.value for t in study.trials) <= 1.0  # TPE found the neighbourhood of the optimum


def test_an_example_trial_that_fails_with_max_failure_rate_zero_stops_its_cell(tmp_path):
    """The example's own failure switch (error=true) against its max_failure_rate: 0.0."""
    result = subprocess.run(
        [
            sys.executable,
            str(STUB.parent / "sphere" / "sphere.py"),
            "-m",
            "error=true",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    (study,) = studies(tmp_path / "sweep").values()
    assert [t.state.name for t in study.trials] == ["FAIL"]
    assert "cfg.error is True" in result.stdout + result.stderr


@pytest.mark.parametrize("trial_key", ["trial", "bench_trial"])
def test_aggressive_pruner_prunes_and_keeps_the_last_value(tmp_path, trial_key):
    """Pruning works whatever hydra.sweeper.trial_key is: the job reads the key from its own config."""
    result = run_stub(
        tmp_path,
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "hydra.sweeper.n_trials=8",
        "steps=5",
        f"hydra.sweeper.trial_key={trial_key}",
        f"+{trial_key}=null" if trial_key != "trial" else "trial=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states(study)
    assert len(study.trials) == 8  # pruned trials count towards n_trials
    for t in pruned:
        assert t.value == t.intermediate_values[max(t.intermediate_values)]  # the last reported value
    assert {r["state"] for r in read_csv(tmp_path / "results.csv")} >= {"PRUNED"}
    for t in pruned:  # its console line says so, with the value it was pruned at
        assert re.search(rf"\] trial {t.number} pruned {t.value:.4g} \(", result.stdout + result.stderr)


def test_the_journal_is_its_owners_only(tmp_path):
    """It holds every cell's config (masked) and params, as the MLflow store does: mode 0600."""
    result = run_stub(tmp_path, "hydra.sweeper.n_trials=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "optuna.journal").stat().st_mode & 0o777 == 0o600


def test_with_count_pruned_false_n_trials_counts_completed_trials_only(tmp_path):
    """A protocol's "16 trials" are 16 fully trained configurations for every model, however much
    the pruner cut: pruned trials are replaced."""
    result = run_stub(
        tmp_path,
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "hydra.sweeper.n_trials=6",
        "steps=5",
        "hydra.sweeper.count_pruned=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    counts = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED")}
    assert counts["COMPLETE"] == 6 and counts["PRUNED"] >= 1, states(study)
    assert len(study.trials) == 6 + counts["PRUNED"]


def test_what_a_trial_returns_besides_its_value_becomes_its_columns(tmp_path):
    """bench's train() returns its out-of-memory retries with the value ({value, oom_retries,
    batch_size, accumulate_grad_batches}): results.csv shows them per trial."""
    result = run_stub(
        tmp_path, "hydra.sweeper.n_trials=2", "+outputs={oom_retries:1,batch_size:4,accumulate_grad_batches:2}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "results.csv")
    assert [(r["oom_retries"], r["batch_size"], r["accumulate_grad_batches"]) for r in rows] == [("1", "4", "2")] * 2
    (study,) = studies(tmp_path).values()
    assert [float(r["value"]) for r in rows] == [t.value for t in study.trials]


def test_a_raising_trial_is_failed_with_its_error_and_other_cells_finish(tmp_path):
    result = run_stub(
        tmp_path, "task=a,b", "fail_tasks=[b]", "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=0.0"
    )
    assert result.returncode != 0
    assert "cells stopped before their budget: task=b" in result.stderr
    found = studies(tmp_path)
    assert states(found["task=a"]) == ["COMPLETE"] * 3
    assert states(found["task=b"]) == ["FAIL"]  # rate 0: the first failure stops the cell
    (failed,) = [r for r in read_csv(tmp_path / "results.csv") if r["state"] == "FAIL"]
    assert "RuntimeError: stub failure in task b" in failed["error"]
    # One line per trial event, with the error's last line; never Hydra's "Error executing job".
    assert "[task=b] trial 0 failed: RuntimeError: stub failure in task b" in result.stdout + result.stderr
    assert "Error executing job" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "launcher",
    [[], ["hydra/launcher=submitit_local", "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit/%j"]],
)
def test_an_error_every_trial_would_repeat_stops_its_cell_at_once(tmp_path, launcher):
    """Matched by class (the sweeper's CellError), in the driver and across a process boundary."""
    result = run_stub(
        tmp_path,
        "task=a",
        "fail_for_the_cell=true",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_failure_rate=1.0",
        *launcher,
        timeout=300,
    )
    assert result.returncode != 0
    assert (
        "every trial of this cell would repeat: StubCellError: task a cannot work with this config"
        in result.stdout + result.stderr
    )
    (study,) = studies(tmp_path).values()
    assert states(study) == ["FAIL"]  # not the 3 failures max_failure_rate=1.0 would allow


def test_max_failure_rate_allows_that_many_failures_per_cell(tmp_path):
    # 0.5 x 4 trials: two failures are tolerated, the third stops the cell.
    result = run_stub(tmp_path, "task=b", "fail=true", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.5")
    assert result.returncode != 0
    (study,) = studies(tmp_path).values()
    assert states(study) == ["FAIL"] * 3
    assert "3 failed trials exceed max_failure_rate=0.5 x n_trials=4" in result.stderr


def test_failures_within_the_rate_are_replaced_so_the_budget_is_met(tmp_path):
    # x > 0.5 fails; the cell still ends with exactly n_trials finished trials.
    result = run_stub(
        tmp_path, "task=a", "hydra.sweeper.n_trials=5", "hydra.sweeper.max_failure_rate=1.0", "fail_above=0.5"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(tmp_path).values()
    assert states(study).count("COMPLETE") == 5
    assert states(study).count("FAIL") >= 1


# ---- bad input: a sentence, before anything exists -------------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        # Quoted: a string in the search-space config, as a search_space/*.yaml file would hold it.
        (["search_space.x='interval(1.0)'"], "search space entry 'x=interval(1.0)' is malformed"),
        (["x=range(0,10,0)"], "range(0, 10, step=0) holds no value"),
        (["search_space.x='interval(2.0, 1.0)'"], "interval(2.0, 1.0) is empty"),
        (["+search_space.nope='choice(1,2)'"], "searched key(s) nope exist nowhere in the config"),
        (["task.direction=up"], "task.direction='up' is not one of ['minimize', 'maximize']"),
        (
            ["hydra.sweeper.sampler._target_=optuna.samplers.TPESamplr"],
            "hydra.sweeper.sampler (optuna.samplers.TPESamplr) cannot be built",
        ),
        (
            ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_warmup_steps=-3"],
            "hydra.sweeper.pruner (optuna.pruners.MedianPruner) cannot be built",
        ),
        (
            ["hydra.sweeper.storage=postgresql://bench:pw@127.0.0.1:1/x"],
            "hydra.sweeper.storage=postgresql://bench:***@127.0.0.1:1/x cannot be reached",
        ),
        (["hydra.sweeper.poll_interval=-1"], "hydra.sweeper.poll_interval=-1.0 must be a positive number of seconds"),
        (["hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials=-1 must be at least 0"),
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 runs no tuning trial, and no repeats are asked for"),
        (["hydra.sweeper.on_change=overwrite"], "hydra.sweeper.on_change='overwrite' must be one of"),
    ],
)
def test_bad_input_fails_with_a_sentence_before_anything_is_created(tmp_path, args, expected):
    sweep = tmp_path / "sweep"
    result = run_stub(sweep, "task=a,b", *args, timeout=120)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-3000:]
    assert not sweep.exists()
    dry = run_stub(sweep, "task=a,b", "hydra.sweeper.dry_run=true", *args, timeout=120)
    assert dry.returncode != 0 and expected in dry.stderr  # the dry run checks the same


def test_a_sweep_dir_that_cannot_be_created_is_refused_before_anything_else(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run_stub(tmp_path / "a_file" / "sweep", "task=a", timeout=120)
    assert result.returncode != 0
    assert (
        f"hydra.sweep.dir={tmp_path / 'a_file' / 'sweep'}: the sweep directory cannot be created because"
        in result.stderr
    )


def test_a_terminal_gets_a_live_progress_view_and_a_log_gets_plain_lines(tmp_path):
    code, shown = run_in_terminal(
        [
            sys.executable,
            str(STUB),
            "-m",
            f"hydra.sweep.dir={tmp_path / 'tty'}",
            "task=a,b",
            "hydra.sweeper.n_trials=2",
            "sleep=0.3",
        ]
    )
    assert code == 0, shown[-3000:]
    assert "bench sweep" in shown and "┃" in shown  # the rich table, redrawn in place
    for header in ("done", "running", "pruned", "failed", "best", "GPU-h", "CPU-h", "elapsed", "ETA"):
        assert header in shown
    assert "CPU-hours spent" in shown  # the sweep's total, in the table's title
    assert "[task=b] trial 1 completed" in shown  # event lines above it
    piped = run_stub(
        tmp_path / "piped", "task=a,b", "hydra.sweeper.n_trials=2", "sleep=0.3", "hydra.sweeper.progress_every_s=0.2"
    )
    assert "┃" not in piped.stdout + piped.stderr
    assert re.search(r"final\n[0-9.e-]+ GPU-hours, [0-9.e-]+ CPU-hours spent\ncell +done +running", piped.stdout)
    # In a log, the table comes as plain text every progress_every_s while trials run.
    assert re.search(r"progress\n[0-9.e-]+ GPU-hours, [0-9.e-]+ CPU-hours spent\ncell +done +running", piped.stdout)
    # One line per trial event: each trial's start, then how it ended.
    for cell in ("task=a", "task=b"):
        for number in (0, 1):
            assert len(re.findall(rf"\[{cell}\] trial {number} started \(job #\d+\): ", piped.stdout)) == 1
            assert len(re.findall(rf"\[{cell}\] trial {number} completed ", piped.stdout)) == 1


def test_dry_run_launches_nothing(tmp_path):
    result = run_stub(tmp_path, "task=a,b", "model=x,y", "hydra.sweeper.dry_run=true", "hydra.sweeper.n_trials=7")
    assert result.returncode == 0, result.stderr
    assert "4 cell(s): 28 tuning trials" in result.stdout
    assert "cell task=b,model=y: maximize score" in result.stdout
    assert "x: interval(-1.0, 1.0)  [FloatDistribution]" in result.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_async_launcher_keeps_slots_busy_without_a_batch_barrier(tmp_path):
    """submitit's local executor runs real processes. Trial 0 is slow: while it runs, the other
    slot must go on taking trials instead of waiting for it (as a batch barrier would)."""
    result = run_stub(
        tmp_path,
        "hydra/launcher=submitit_local",
        f"hydra.launcher.submitit_folder={tmp_path}/.submitit/%j",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=6",
        "sleep=0.3",
        "slow_trials=[0]",
        "slow_factor=30",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    timings = {int(p.parent.name): json.loads(p.read_text()) for p in tmp_path.glob("*/timing.json")}
    assert len(timings) == 6
    assert len({t["pid"] for t in timings.values()}) == 6  # each trial in its own process
    slow = timings[0]
    inside = [n for n, t in timings.items() if n != 0 and slow["start"] < t["start"] and t["end"] < slow["end"]]
    assert len(inside) >= 2, timings  # whole trials started and finished while trial 0 ran
    assert (tmp_path / ".submitit").stat().st_mode & 0o777 == 0o700  # job pickles carry real values
