"""The whole protocol on real TerraTorch training (CPU, synthetic GeoTIFFs), as a user runs it:
tune each cell of 2 tasks x 2 models, repeat each cell's best configuration with seeds, test each
repeat on its best checkpoint, track it all in MLflow, report. (A file of its own: the longest
test, so pytest-xdist can run the other files beside it.)"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.duration(160)]


def test_benchmark_over_two_tasks_and_two_models_tunes_prunes_repeats_tests_tracks_and_reports(run_cli, tmp_path):
    """The whole protocol, small: 2 tasks x 2 models through the bench sweeper, train() in each trial
    reporting every epoch to its study and to its MLflow run, an aggressive pruner; then 3 seed
    repeats of each cell's best config, each tested on its best checkpoint; results on disk and on
    the embedded MLflow store (multirun_outputs/mlflow.db); then the report."""
    import optuna
    from mlflow import MlflowClient

    from tests.helpers import SECRET, read_results, studies, tree

    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=synthetic_seg,synthetic_cls",
        "model=prithvi_tiny,resnet50",
        "model.model_args.backbone_pretrained=false",
        "task.max_epochs=2",
        "task.patience=2",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",  # the benchmark's plumbing, not learning
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=3",
        "hydra.sweeper.sampler.seed=1",
        "hydra/sweeper/pruner=successive_halving",
        "hydra.sweeper.pruner.min_resource=1",
        "hydra.sweeper.pruner.reduction_factor=100",
        f"hydra.sweep.dir={sweep}",
        f"+db.password={SECRET}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = studies(sweep)
    for task, metric in (("synthetic_seg", "val/mIoU"), ("synthetic_cls", "val/Accuracy")):
        for model in ("prithvi_tiny", "resnet50"):
            study = found[f"task={task},model={model}"]
            assert study.direction == optuna.study.StudyDirection.MAXIMIZE
            assert len(study.trials) == 2
            assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
            assert all(t.intermediate_values for t in study.trials)  # train() reported each epoch
            assert study.user_attrs["metric"] == metric
    rows = read_results(tmp_path)
    assert len(rows) == 8 and "PRUNED" in {r["state"] for r in rows}
    assert all(r["cell"] == f"task={r['task']},model={r['model']}" and r["metric"] for r in rows)
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    assert (tmp_path / "multirun_outputs" / "mlflow.db").stat().st_mode & 0o777 == 0o600  # its owner's only
    assert (tmp_path / "multirun_outputs" / "mlartifacts").stat().st_mode & 0o777 == 0o700
    levels = tree(client, "bench")
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": 4, "trial": 8, "repeat": 12}
    trial_runs = {r.info.run_id: r for r in levels["trial"]}
    assert sorted(r["mlflow_run_id"] for r in rows) == sorted(trial_runs)
    for row in rows:
        job_config = (Path(row["job_dir"]) / ".hydra" / "config.yaml").read_text()
        assert f"lr: {row['hparams.lr']}" in job_config  # each trial trained with its own sample
        run = trial_runs[row["mlflow_run_id"]]
        metric = row["metric"]
        epochs = len(found[row["cell"]].trials[int(row["trial"])].intermediate_values)  # fewer when pruned early
        assert len(client.get_metric_history(run.info.run_id, metric)) == epochs  # one point per epoch
        assert client.get_metric_history(run.info.run_id, "train/loss")
        if row["state"] == "COMPLETE" or epochs > 1:  # a trial pruned at its first epoch saved nothing
            assert run.data.tags["bench.checkpoint_path"].endswith(".ckpt")
        assert not (Path(row["job_dir"]) / "checkpoints" / "last.ckpt").exists()  # finished or pruned
        assert float(run.data.params["hparams.lr"]) == float(row["hparams.lr"])
        assert {"config.yaml", "overrides.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        config = Path(
            client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / run.info.run_id))
        ).read_text()
        assert SECRET not in config and "password" in config
        assert SECRET not in (Path(row["job_dir"]) / ".hydra" / "overrides.yaml").read_text()
    assert SECRET not in result.stdout + result.stderr + (sweep / "multirun.yaml").read_text()
    # The console shows trial events, not each trial's framework logs: those are in the job's log.
    console = result.stdout + result.stderr
    assert "Error executing job" not in console and "LitLogger" not in console and "litmodels" not in console
    assert "GPU available:" not in console
    assert "GPU available:" in (Path(rows[0]["job_dir"]) / "bench.log").read_text()
    assert_repeated_tested_and_reported(client, levels, sweep, rows)


def assert_repeated_tested_and_reported(client, levels: dict, sweep: Path, tuning: list[dict]) -> None:
    from tests.helpers import read_csv

    repeats = read_csv(sweep / "repeats.csv")
    cells = {r["cell"] for r in tuning}
    assert {r["cell"] for r in repeats} == cells
    for cell in cells:
        rows = [r for r in repeats if r["cell"] == cell]
        assert sorted(int(r["seed"]) for r in rows) == [1, 2, 3] and {r["state"] for r in rows} == {"COMPLETE"}
        # Tested on its own best checkpoint: the test value is the task metric on the test split.
        test_metric = {"synthetic_cls": "test/Accuracy", "synthetic_seg": "test/mIoU"}[rows[0]["task"]]
        assert all(float(r["test_value"]) == float(r[test_metric]) for r in rows)
        assert all(Path(r["checkpoint"]) == Path(r["job_dir"]) / "checkpoints" / "best.ckpt" for r in rows)
        assert all(Path(r["checkpoint"]).is_file() and float(r["duration_s"]) > 0 for r in rows)
    # A repeat was running while another cell still tuned: no barrier between the phases.
    at = datetime.fromisoformat  # the tables' times are ISO 8601 with their zone
    assert min(at(r["started_at"]) for r in repeats) < max(at(r["finished_at"]) for r in tuning)

    cell_runs = {r.info.run_id: r for r in levels["cell"]}
    for run in levels["repeat"]:  # under their cell's run, tagged with their seed
        parent = cell_runs[run.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["bench.cell"] == run.data.tags["bench.cell"] and run.info.status == "FINISHED"
        assert run.data.tags["bench.seed"] in {"1", "2", "3"}
    for run in cell_runs.values():
        assert run.data.metrics["n_repeats"] == 3 and {"test_mean", "test_std", "test_iqm"} <= set(run.data.metrics)
    assert {r["mlflow_run_id"] for r in repeats} == {r.info.run_id for r in levels["repeat"]}

    report = subprocess.run(
        [sys.executable, "-m", "bench.report", str(sweep), "--bootstrap", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    out = sweep / "report"
    scores = read_csv(out / "scores.csv")
    assert len(scores) == 12 and list(scores[0])[:5] == ["dataset", "Metric", "test metric", "Seed", "backbone"]
    assert {r["Metric"] for r in scores} == {"Accuracy", "Multiclass_Jaccard_Index"}  # the leaderboard's labels
    # Each cell's own head and stopping rule, from the sweep's columns (nothing swept them).
    assert {(r["backbone"], r["dataset"], r["decoder"]) for r in scores} == {
        ("prithvi_tiny", "synthetic_seg", "FCNDecoder"),
        ("prithvi_tiny", "synthetic_cls", "FCNDecoder"),
        ("resnet50", "synthetic_seg", "UNetDecoder"),
        ("resnet50", "synthetic_cls", "IdentityDecoder"),
    }
    assert {r["early_stop_patience"] for r in scores} == {"2"}
    assert list(read_csv(out / "datasets.csv")[0]) == [
        "model",
        "dataset",
        "metric",
        "direction",
        "n_seeds",
        "raw_mean",
        "raw_std",
        "normalized_iqm",
        "ci_low",
        "ci_high",
        "raw_iqm",
        "raw_ci_low",
        "raw_ci_high",
        "tuning_trials",
        "failed_repeats",
        "note",
    ]
    # Each cell's completed tuning trials, as results.csv has them (its pruner may have cut some).
    completed = {
        (r["model"], r["task"]): sum(
            t["state"] == "COMPLETE" for t in tuning if (t["model"], t["task"]) == (r["model"], r["task"])
        )
        for r in tuning
    }
    assert {(r["model"], r["dataset"]): int(r["tuning_trials"]) for r in read_csv(out / "datasets.csv")} == completed
    assert list(read_csv(out / "groups.csv")[0]) == ["model", "group", "value", "ci_low", "ci_high", "se", "reason"]
    assert list(read_csv(out / "pairs.csv")[0]) == ["group", "model_a", "model_b", "probability", "ci_low", "ci_high"]
    assert len(read_csv(out / "tuning.csv")) == 4
    # What each model x task cost: the sweep's own per-trial figures, tuning and repeats apart.
    costs = {(r["model"], r["dataset"]): r for r in read_csv(out / "costs.csv")}
    assert len(costs) == 4
    for (model, task), row in costs.items():
        spent = {
            phase: sum(float(r["cpu_hours"]) for r in rows if (r["model"], r["task"]) == (model, task))
            for phase, rows in (("tuning", tuning), ("repeats", repeats))
        }
        assert float(row["tuning_cpu_hours"]) == pytest.approx(spent["tuning"]) and spent["tuning"] > 0
        assert float(row["repeats_cpu_hours"]) == pytest.approx(spent["repeats"]) and spent["repeats"] > 0
        assert float(row["cpu_hours"]) == pytest.approx(spent["tuning"] + spent["repeats"])
    assert "costs.csv" in report.stdout
    for name in ("report.html", "groups.png", "datasets.png", "profile.png", "tuning.png"):
        assert (out / name).is_file(), name
    benchmark = json.loads((sweep / "mlflow.json").read_text())["benchmark_run"]
    logged = {a.path for a in client.list_artifacts(benchmark, "report")}
    assert {"report/report.html", "report/groups.csv", "report/scores.csv"} <= logged

    # The same scores read back from the MLflow experiment instead of the sweep dir.
    from_mlflow = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.report",
            "mlflow:bench",
            "--tracking-uri",
            client.tracking_uri,
            "--out",
            str(sweep.parent / "from_mlflow"),
            "--bootstrap",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert from_mlflow.returncode == 0, from_mlflow.stderr[-2000:]
    assert read_csv(sweep.parent / "from_mlflow" / "scores.csv") == scores
    assert read_csv(sweep.parent / "from_mlflow" / "costs.csv") == read_csv(out / "costs.csv")
