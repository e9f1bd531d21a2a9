"""Small helpers over MlflowClient for bench's run tree: benchmark > cell > trial.

Runs are found again by tags (level, sweep dir, cell), so a resumed sweep reuses its benchmark and
cell runs instead of creating new ones. Nothing here deletes a run or an artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

LEVEL, SWEEP_DIR, CELL, TRIAL, STATE = "bench.level", "bench.sweep_dir", "bench.cell", "bench.trial", "bench.state"
STUDY = "bench.study"
SEED = "bench.seed"  # a repeat run's seed (its level is "repeat")
PARENT = "mlflow.parentRunId"
MAX_PARAM = 6000  # MLflow's limit on a param value
# What the MLflow UI opens an experiment on: with no kind, MLflow 3 may take it for a GenAI
# experiment and open its traces page; this kind opens the runs table.
EXPERIMENT_KIND, RUNS_KIND = "mlflow.experimentKind", "custom_model_development"
# The config groups whose chosen option names a run (the sweeper's label_keys in conf/config.yaml):
# tags on cell, trial and repeat runs, and a single run's name.
NAMED_BY = ("task", "model")


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id; created with its kind set, so the MLflow UI opens it on its runs. An
    existing experiment with no kind gets it too; one with a kind of its own keeps it."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)  # never silently lose old runs
        if EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, RUNS_KIND)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location, tags={EXPERIMENT_KIND: RUNS_KIND})


def named_by(choices: Any) -> dict[str, str]:
    """{task: ..., model: ...}: the options a config chose for the groups that name a run
    (hydra.runtime.choices), those it has."""
    return {key: str(choices[key]) for key in NAMED_BY if choices and choices.get(key) is not None}


def run_name(named: dict[str, str]) -> str | None:
    """'synthetic_seg · prithvi_tiny'; None (MLflow's generated name) when nothing names the run."""
    return " · ".join(named[key] for key in NAMED_BY if key in named) or None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def find_runs(client: MlflowClient, experiment_id: str, **tags: str) -> list[Run]:
    where = " and ".join(f"tags.`{key}` = {_quote(str(value))}" for key, value in tags.items())
    return client.search_runs([experiment_id], filter_string=where, max_results=50000)


def create_run(
    client: MlflowClient, experiment_id: str, name: str | None, tags: dict[str, Any], parent_id: str | None = None
) -> str:
    all_tags = {k: str(v) for k, v in tags.items() if v is not None}
    if parent_id:
        all_tags[PARENT] = parent_id
    return client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    new = [Param(str(k), str(v)[:MAX_PARAM]) for k, v in params.items() if str(k) not in existing]
    for start in range(0, len(new), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=new[start : start + 100])


def log_yaml(client: MlflowClient, run_id: str, data: Any, artifact_file: str) -> None:
    client.log_text(run_id, yaml.safe_dump(data, sort_keys=False), artifact_file)
