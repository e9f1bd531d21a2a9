"""Names you can filter on: every cell named by its task and model, swept or not (the console, the
CSVs, the study names, MLflow), MLflow runs tagged and named by them with each param once, the
experiment opening on its runs, Optuna objectives named after their metrics, ISO 8601 times in the
CSVs, and multirun_outputs/latest."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime

import pytest

from tests.helpers import read_csv, run_stub, run_tracked_stub, studies, tree

pytestmark = pytest.mark.duration(75)

CELL = "task=synthetic_seg,model=prithvi_tiny"
# One short epoch: what is checked is the names, not what the model learns.
TINY = ["task.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]


def _params_once(params: dict[str, str]) -> None:
    """No param twice (hparams.lr and the task's own lr) and none without a value."""
    hparams = {key.removeprefix("hparams.") for key in params if key.startswith("hparams.")}
    again = [key for key in params if not key.startswith("hparams.") and key.replace("/", ".") in hparams]
    assert not again, f"logged as hparams.<key> and again as {again}"
    assert not [key for key, value in params.items() if value == "None"]


@pytest.mark.slow
def test_bench_names_an_unswept_cell_by_task_and_model_everywhere(run_cli, tmp_path):
    """The card's own command, `python -m bench -m task=x model=y`, with nothing swept: the cell is
    task=x,model=y (it was `default`) in the console, results.csv, best.csv, the study and MLflow;
    then a single run of the same pair is named after it."""
    from mlflow import MlflowClient

    from hydra_plugins.bench_sweeper._studies import open_storage

    result = run_cli("-m", "task=synthetic_seg", "model=prithvi_tiny", "hydra.sweeper.n_trials=1", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout + result.stderr
    assert f"[{CELL}] trial 0 completed" in shown and "[default]" not in shown

    # multirun_outputs/latest: the sweep just run, by a relative link
    latest = tmp_path / "multirun_outputs" / "latest"
    (sweep,) = [p for p in (tmp_path / "multirun_outputs").iterdir() if (p / "sweep.json").exists() and p != latest]
    assert latest.is_symlink() and os.readlink(latest) == sweep.name
    assert json.loads((sweep / "sweep.json").read_text())["label_keys"] == ["task", "model"]

    (row,) = read_csv(sweep / "results.csv")
    assert (row["cell"], row["task"], row["model"], row["state"]) == (CELL, "synthetic_seg", "prithvi_tiny", "COMPLETE")
    assert row["study"].startswith(f"bench[{CELL}]@")
    started, finished = datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["finished_at"])
    assert started.tzinfo is not None and started.utcoffset().total_seconds() == 0 and started < finished
    assert [r["cell"] for r in read_csv(sweep / "best.csv")] == [CELL]

    # Optuna: the study names its objective (optuna-dashboard shows val/mIoU, not "Objective 0")
    import optuna

    (study,) = optuna.get_all_study_summaries(open_storage(str(sweep / "optuna.journal")))
    assert optuna.load_study(
        study_name=study.study_name, storage=open_storage(str(sweep / "optuna.journal"))
    ).metric_names == ["val/mIoU"]

    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    experiment = client.get_experiment_by_name("bench")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the runs view, not traces
    levels = tree(client, "bench")
    (cell,), (trial,) = levels["cell"], levels["trial"]
    assert cell.info.run_name == CELL and trial.info.run_name == f"{CELL} #0"
    for run in (cell, trial):
        tags = run.data.tags
        assert (tags["bench.cell"], tags["task"], tags["model"]) == (CELL, "synthetic_seg", "prithvi_tiny")
    params = trial.data.params
    _params_once(params)
    # the searched ones (from the driver) and the rest of hparams (from the job), under their config keys
    assert {"hparams.lr", "hparams.batch_size", "hparams.optimizer", "hparams.optimizer_hparams.weight_decay"} <= set(
        params
    )
    assert float(params["hparams.lr"]) == pytest.approx(float(row["hparams.lr"]))

    # A single run: named after its task and model, tagged with them, each param once
    result = run_cli("task=synthetic_seg", "model=prithvi_tiny", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (single,) = tree(client, "bench")["run"]
    assert single.info.run_name == "synthetic_seg · prithvi_tiny"
    assert (single.data.tags["task"], single.data.tags["model"]) == ("synthetic_seg", "prithvi_tiny")
    _params_once(single.data.params)
    assert single.data.params["hparams.optimizer"] == "AdamW"


def test_label_keys_name_each_cell_first_and_a_dir_keeps_the_labels_it_was_made_with(tmp_path):
    sweep = tmp_path / "sweep"
    named = ["hydra.sweeper.label_keys=[task,model]", "hydra.sweeper.n_trials=1"]
    result = run_stub(sweep, "model=y,x", *named)
    assert result.returncode == 0, result.stderr[-3000:]
    # task is not swept and still names the cells, first, as label_keys orders them
    assert sorted(r["cell"] for r in read_csv(sweep / "best.csv")) == ["task=a,model=x", "task=a,model=y"]
    assert sorted(studies(sweep)) == ["task=a,model=x", "task=a,model=y"]
    # Its sweep.json restored by hand without them: its studies' labels say which it had.
    identity = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({"sweep_id": identity["sweep_id"]}))
    assert run_stub(sweep, "model=y,x", *named[:1], "hydra.sweeper.n_trials=2").returncode == 0
    assert {label: len(s.trials) for label, s in studies(sweep).items()} == {"task=a,model=x": 2, "task=a,model=y": 2}

    # A dir whose sweep.json records no label keys (made before they existed) resumes under its own
    # labels, whatever hydra.sweeper.label_keys says now: its studies are found, not started over.
    old = tmp_path / "old"
    assert run_stub(old, "task=a", "hydra.sweeper.n_trials=2").returncode == 0
    identity = json.loads((old / "sweep.json").read_text())
    assert identity["label_keys"] == []
    del identity["label_keys"]
    (old / "sweep.json").write_text(json.dumps(identity))
    result = run_stub(old, "task=a", "hydra.sweeper.label_keys=[task,model]", "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = studies(old).values()
    assert list(studies(old)) == ["default"] and len(study.trials) == 3
    assert {r["cell"] for r in read_csv(old / "results.csv")} == {"default"}
    assert json.loads((old / "sweep.json").read_text())["label_keys"] == []  # recorded now


def test_trial_and_repeat_runs_carry_task_and_model_tags_when_neither_is_swept(tmp_path):
    result = run_tracked_stub(tmp_path, "task=a", "hydra.sweeper.n_trials=1", "hydra.sweeper.repeats=1")
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment_by_name("stub").tags["mlflow.experimentKind"] == "custom_model_development"
    levels = tree(client)
    assert len(levels["trial"]) == len(levels["repeat"]) == 1
    for run in levels["cell"] + levels["trial"] + levels["repeat"]:
        assert (run.data.tags["task"], run.data.tags["model"]) == ("a", "x")


def test_an_existing_experiment_keeps_its_own_kind_and_gets_one_when_it_has_none(tmp_path):
    from mlflow import MlflowClient

    from bench.tracking.run_tree import EXPERIMENT_KIND, ensure_experiment

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    bare = client.create_experiment("bare")
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND: "genai_development"})
    assert ensure_experiment(client, "bare", None) == bare
    assert ensure_experiment(client, "chosen", None) == chosen
    assert client.get_experiment(bare).tags[EXPERIMENT_KIND] == "custom_model_development"
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND] == "genai_development"


def test_studies_name_their_objectives_also_when_resumed_from_before(tmp_path):
    import optuna

    from hydra_plugins.bench_sweeper._studies import name_metrics

    storage = f"sqlite:///{tmp_path}/optuna.db"
    one = optuna.create_study(study_name="one", storage=storage)
    assert one.metric_names is None  # as a study made before bench named them
    name_metrics(optuna.load_study(study_name="one", storage=storage), "val/mIoU")
    assert optuna.load_study(study_name="one", storage=storage).metric_names == ["val/mIoU"]
    two = optuna.create_study(study_name="two", storage=storage, directions=["maximize", "minimize"])
    name_metrics(two, ["val/mIoU", "cost/params_M"])
    name_metrics(two, None)  # no metric_key: left as it is
    assert optuna.load_study(study_name="two", storage=storage).metric_names == ["val/mIoU", "cost/params_M"]


def test_table_times_are_iso_8601_in_utc():
    from hydra_plugins.bench_sweeper._results import iso_time

    assert iso_time(1_780_000_000.5) == "2026-05-28T20:26:40.500+00:00"
    assert iso_time(None) == iso_time("") == ""


def test_the_latest_link_follows_each_new_sweep_and_leaves_other_things_alone(tmp_path, caplog):
    from hydra_plugins.bench_sweeper._sweepdir import update_latest_link

    outputs = tmp_path / "multirun_outputs"
    first, second = outputs / "2026-01-01_00-00-00_a", outputs / "2026-01-02_00-00-00_b"
    for path in (first, second):
        path.mkdir(parents=True)
    link = outputs / "latest"
    update_latest_link(link, first)
    update_latest_link(link, second)  # replaced, not refused: a symlink it made
    assert os.readlink(link) == second.name and link.resolve() == second.resolve()
    assert sorted(p.name for p in outputs.iterdir()) == sorted([first.name, second.name, "latest"])  # no temp left

    update_latest_link(link, tmp_path / "elsewhere")  # a sweep dir outside the folder: not its latest
    assert os.readlink(link) == second.name

    mine = tmp_path / "mine" / "latest"
    mine.mkdir(parents=True)  # a user's own folder of that name
    with caplog.at_level(logging.WARNING):
        update_latest_link(mine, tmp_path / "mine" / "sweep")
    assert mine.is_dir() and not mine.is_symlink() and "is not a symlink" in caplog.text
