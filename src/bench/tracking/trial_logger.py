"""The job side of tracking: one trial's MLflow run, which train() receives explicitly.

A TrialLogger writes to one run by its id through an MlflowClient: no `mlflow.start_run`, no global
active run, no background queue. In a bench sweep the driver (bench.tracking.sweep_callback) has
created the run and handed its id and the tracking URI to the job as config values
(mlflow.run_id, mlflow.tracking_uri); a single `python -m bench` run gets a standalone run here.

Why synchronous, batched requests instead of MLflow's asynchronous logging: the async queue made
every trial pay ~2 s after its fit (flush_async_logging ~0.9 s waiting on the queue thread, and
end_run's shut_down_async_logging ~1 s) on trials whose fit takes 4-6 s. Here per-epoch metrics
are buffered and sent as one log_batch request per epoch (bench.tracking.lightning_logger), and
opening and closing a run are a few requests each (benchmarks/trial_logger_overhead.py prints
what that costs outside the fit).

    logger = TrialLogger.for_job(cfg, overrides, output_dir, multirun)   # None: tracking is off
    train(cfg, logger)        # per-epoch metrics, OOM-retry tags, the best checkpoint
    logger.close(outcome)     # objective(s), bench.state, FINISHED / FAILED + error.txt / KILLED
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf

from bench.tracking import run_tree
from bench.tracking.store import default_locations, settings_of, store_locations
from hydra_plugins.bench_sweeper.api import Outcome, flatten, mask_config, mask_data, mask_override, mask_text

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

R = TypeVar("R")
_MAX_METRICS = 1000  # MLflow's limit per log_batch request
_MAX_PARAMS = 100


def app_config(config: DictConfig) -> dict[str, Any]:
    """The composed config without Hydra's own node, resolved and masked."""
    plain = mask_config(config)
    plain.pop("hydra", None)
    return plain


class TrialLogger:
    """One run, by id. Metrics wait in a buffer until flush(); everything else is sent at once."""

    def __init__(self, tracking_uri: str, run_id: str, save_models: bool = False, standalone: bool = False) -> None:
        from mlflow import MlflowClient

        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.client: MlflowClient = MlflowClient(tracking_uri)
        self.save_models = save_models  # the best checkpoint as an artifact, else its path as a tag
        self.standalone = standalone  # no driver will close this run if the job cannot
        self._pending: list[Metric] = []
        self._params: set[str] = set()  # MLflow refuses a param logged again with another value

    # ---- opening --------------------------------------------------------------------------------
    @classmethod
    def for_job(
        cls, config: DictConfig, overrides: Sequence[str], output_dir: str, multirun: bool
    ) -> TrialLogger | None:
        """The run this job logs to, with its composed config and overrides (masked) and its output
        dir; None where tracking is off, or in a sweep whose sweeper handed the job no run."""
        settings = settings_of(config)
        if settings is None:
            return None
        run_id = settings.get("run_id")
        save_models = bool(settings.get("save_models", False))
        if run_id:  # the sweep's driver made the store and hands its URI to every job
            logger = cls(settings.get("tracking_uri") or default_locations()[0], run_id, save_models)
        elif multirun:
            return None  # a sweep without the bench sweeper: nobody to hand this job a run
        else:  # a single `python -m bench` run: a standalone run in the same experiment
            logger = cls.standalone_run(config, settings, save_models)
        logger.log_job(config, overrides, output_dir)
        return logger

    @classmethod
    def standalone_run(cls, config: DictConfig, settings: DictConfig, save_models: bool) -> TrialLogger:
        from mlflow import MlflowClient

        uri, artifacts = store_locations(settings)
        client = MlflowClient(uri)
        experiment_id = run_tree.ensure_experiment(client, settings.experiment, artifacts)
        run_id = run_tree.create_run(client, experiment_id, None, {run_tree.LEVEL: "run"})  # a generated name
        logger = cls(uri, run_id, save_models, standalone=True)
        hparams = OmegaConf.to_container(config.get("hparams") or {}, resolve=True)
        logger.log_params(
            flatten({str(k): v for k, v in hparams.items()} if isinstance(hparams, dict) else {}, "hparams.")
        )
        return logger

    def log_job(self, config: DictConfig, overrides: Sequence[str], output_dir: str) -> None:
        masked = OmegaConf.to_container(OmegaConf.create([mask_override(o) for o in overrides]))
        self.client.log_text(self.run_id, yaml.safe_dump(app_config(config), sort_keys=False), "config.yaml")
        self.client.log_text(self.run_id, yaml.safe_dump(masked, sort_keys=False), "overrides.yaml")
        self.tag({"bench.output_dir": output_dir})

    # ---- during the job -------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffered: sent with the next flush()."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())

    def flush(self) -> None:
        """Every buffered metric point, in requests of at most 1000."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=pending[start : start + _MAX_METRICS], synchronous=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Masked; a param this logger already logged keeps its first value (an OOM retry's task is
        built again with the same hyperparameters, and MLflow refuses a changed value)."""
        from mlflow.entities import Param

        new = [
            Param(str(key), str(value)[: run_tree.MAX_PARAM])
            for key, value in mask_data(dict(params)).items()
            if str(key) not in self._params
        ]
        self._params.update(p.key for p in new)
        for start in range(0, len(new), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=new[start : start + _MAX_PARAMS], synchronous=True)

    def tag(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

    def record_checkpoint(self, path: str) -> None:
        """The trial's best checkpoint: the file itself with mlflow.save_models, else its path."""
        if not path:
            return
        if self.save_models:
            self.client.log_artifact(self.run_id, path, "checkpoints")
        else:
            self.tag({"bench.checkpoint_path": path})

    def lightning_logger(self) -> Any:
        """A Lightning logger feeding this run, one request per epoch (bench.tracking.lightning_logger)."""
        from bench.tracking.lightning_logger import EpochBatchLogger

        return EpochBatchLogger(self)

    # ---- closing --------------------------------------------------------------------------------
    def close(self, outcome: Outcome) -> str:
        """The run's final state from the job's outcome (the sweeper's judge(): the one parser of
        what a job returned): the objective(s) and COMPLETE / FINISHED; PRUNED / KILLED; FAIL /
        FAILED with the traceback, masked, as error.txt. Metrics still buffered go in the same request.
        Returns the status the run was closed with."""
        from mlflow.entities import Metric, RunTag

        state = outcome.state.name
        now = int(time.time() * 1000)
        tags = [RunTag(run_tree.STATE, state)]
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        if state == "COMPLETE":
            # A repeat returns {"value": objective, "test_value": ..., ...}; a trial its objective,
            # or one value per objective (a multi-objective cell).
            values = outcome.value if isinstance(outcome.value, list) else [outcome.value]
            names = [f"objective_{i}" for i in range(len(values))] if len(values) > 1 else ["objective"]
            self._pending.extend(Metric(n, float(v), now, 0) for n, v in zip(names, values) if v is not None)
        elif state == "PRUNED":
            tags.append(RunTag("bench.pruned", "true"))
        elif outcome.error:
            self.client.log_text(self.run_id, mask_text(outcome.error), "error.txt")
        try:
            pending, self._pending = self._pending, []
            self.client.log_batch(self.run_id, metrics=pending[:_MAX_METRICS], tags=tags, synchronous=True)
            self._pending = pending[_MAX_METRICS:]
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status)
        return status

    def around(self, job: Callable[[], R]) -> R:
        """Run the job and close the run with its outcome, judged as the sweeper judges a job's
        return (judge(): a value, a list per objective, a mapping with "value"; TrialPruned; any
        other exception). The job's exception goes on, as Hydra's job runner expects it."""
        from hydra.core.utils import JobReturn, JobStatus

        from hydra_plugins.bench_sweeper.api import judge

        try:
            value = job()
        except Exception as exc:
            self.close(judge(JobReturn(status=JobStatus.FAILED, _return_value=exc), objectives=None))
            raise
        except BaseException:
            self.interrupted()
            raise
        self.close(judge(JobReturn(status=JobStatus.COMPLETED, _return_value=value), objectives=None))
        return value

    def interrupted(self) -> None:
        """The job was stopped (Ctrl-C, SIGTERM, a preempted or requeued SLURM job): what it logged
        stays. In a sweep the driver closes the run (KILLED, bench.state=INTERRUPTED) or a requeued
        job continues it; a standalone run has no driver, so it is closed KILLED here."""
        try:
            self.flush()
        finally:
            if self.standalone:
                self.client.set_terminated(self.run_id, "KILLED")
