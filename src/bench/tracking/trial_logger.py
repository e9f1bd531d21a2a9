"""The job side of tracking: one trial's MLflow run, which train() receives explicitly.

A TrialLogger writes to one run by its id through an MlflowClient: no `mlflow.start_run`, no global
active run. In a bench sweep the driver (bench.tracking.sweep_callback) has created the run and
handed its id and the tracking URI to the job as config values (mlflow.run_id,
mlflow.tracking_uri); a single `python -m bench` run gets a standalone run here.

What it costs a trial (benchmarks/trial_logger_overhead.py prints it, goal: under 0.1 s outside
the fit on every launcher): the job's config and overrides, and each epoch's metrics (one
log_batch per epoch: bench.tracking.lightning_logger), go to a thread of the trial's own
(bench.tracking.sender) while it trains; closing the run is two requests, after that thread has
sent the rest. MLflow's own asynchronous logging, used before, cost ~2 s per trial at its end.

    logger = TrialLogger.for_job(cfg, overrides, output_dir, multirun)   # None: tracking is off
    logger.around(lambda: train(cfg, logger))   # closes the run with the job's outcome:
        # objective(s) and bench.state; FINISHED / KILLED (pruned) / FAILED with error.txt (masked)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf

from bench.tracking import run_tree
from bench.tracking.sender import Sender
from bench.tracking.store import default_locations, settings_of, store_locations
from hydra_plugins.bench_sweeper.api import Outcome, flatten, mask_config, mask_data, mask_override, mask_text

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from bench.tracking.lightning_logger import EpochBatchLogger

R = TypeVar("R")
_MAX_METRICS = 1000  # MLflow's limit per log_batch request
_MAX_PARAMS = 100


def app_config(config: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The composed config without Hydra's own node, resolved and masked. Only the app's part is
    resolved: resolving Hydra's node too cost as much again, to be thrown away."""
    raw = OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig) else config
    if not isinstance(raw, dict):
        raise TypeError(f"a config mapping, not {type(raw).__name__}")
    masked = mask_config(OmegaConf.create({key: value for key, value in raw.items() if key != "hydra"}))
    return {str(key): value for key, value in masked.items()}


class TrialLogger:
    """One run, by id. Metrics wait in a buffer until flush(); what is logged while the trial runs
    is sent by its Sender thread, in order; close() sends the rest and ends the run."""

    def __init__(self, tracking_uri: str, run_id: str, save_models: bool = False, standalone: bool = False) -> None:
        from mlflow import MlflowClient

        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.client: MlflowClient = MlflowClient(tracking_uri)
        self.save_models = save_models  # the best checkpoint as an artifact, else its path as a tag
        self.standalone = standalone  # no driver will close this run if the job cannot
        self._pending: list[Metric] = []
        # Flushed points not yet sent: one send request takes all of them, however many epochs
        # they come from, so a trial that logs faster than its store answers sends fewer, larger
        # requests instead of queueing one per epoch (benchmarks/tracking_load.py).
        self._outbox: list[Metric] = []
        self._outbox_lock = threading.Lock()
        self._outbox_queued = False
        self._params: set[str] = set()  # MLflow refuses a param logged again with another value
        # The hparams keys, bare (lr, optimizer_hparams.weight_decay): the same values the task's
        # hyperparameters repeat under those names, logged once, as hparams.* (log_hyperparams).
        self.hparams_keys: set[str] = set()
        self._sender = Sender(run_id)

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
            logger.log_hparams(config, driver_logged=True)
        elif multirun:
            return None  # a sweep without the bench sweeper: nobody to hand this job a run
        else:  # a single `python -m bench` run: a standalone run in the same experiment
            logger = cls.standalone_run(config, settings, save_models)
        logger.log_job(config, overrides, output_dir)
        return logger

    @classmethod
    def standalone_run(cls, config: DictConfig, settings: DictConfig, save_models: bool) -> TrialLogger:
        """A run of its own, named after its task and model ('synthetic_seg · prithvi_tiny') and
        tagged with them, as a sweep's trial runs are."""
        from mlflow import MlflowClient

        uri, artifacts = store_locations(settings)
        client = MlflowClient(uri)
        experiment_id = run_tree.ensure_experiment(client, settings.experiment, artifacts)
        named = run_tree.named_by(_job_choices(config))
        run_id = run_tree.create_run(client, experiment_id, run_tree.run_name(named), {run_tree.LEVEL: "run", **named})
        logger = cls(uri, run_id, save_models, standalone=True)
        logger.log_hparams(config, driver_logged=False)
        return logger

    def log_hparams(self, config: DictConfig, driver_logged: bool) -> None:
        """The trial's hyperparameters, each once, as hparams.<key> (the key a search space tunes,
        results.csv's column, the override that reproduces it); None values are left out. In a sweep
        the driver has logged the searched ones (with the trial's run): the rest are added, on the
        sender's thread, so the job never waits on the request."""
        node = config.get("hparams")  # an app other than bench may have none
        raw = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else {}
        flat = flatten({str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {})
        self.hparams_keys = set(flat)
        params = {f"hparams.{key}": value for key, value in flat.items() if value is not None}
        if not driver_logged or not params:
            self.log_params(params)
            return
        self._params.update(params)  # log_hyperparams must not log them again

        def send() -> None:
            from mlflow.entities import Param

            logged = self.client.get_run(self.run_id).data.params
            new = [
                Param(str(key), str(value)[: run_tree.MAX_PARAM])
                for key, value in mask_data(params).items()
                if str(key) not in logged
            ]
            for start in range(0, len(new), _MAX_PARAMS):
                self.client.log_batch(self.run_id, params=new[start : start + _MAX_PARAMS], synchronous=True)

        self._sender.submit(send)

    def log_job(self, config: DictConfig, overrides: Sequence[str], output_dir: str) -> None:
        """config.yaml and overrides.yaml (masked), and the output dir as a tag. The config is
        copied here (a few ms) and resolved and masked on the sender's thread (~50 ms on bench's)."""
        raw = OmegaConf.to_container(config, resolve=False)
        masked_overrides = [mask_override(str(o)) for o in overrides]

        def send() -> None:
            plain = {str(key): value for key, value in raw.items()} if isinstance(raw, dict) else {}
            dump = yaml.safe_dump(app_config(plain), sort_keys=False)
            self.client.log_text(self.run_id, dump, "config.yaml")
            self.client.log_text(self.run_id, yaml.safe_dump(masked_overrides, sort_keys=False), "overrides.yaml")

        self._sender.submit(send)
        self.tag({"bench.output_dir": output_dir})

    # ---- during the job -------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffered: sent with the next flush()."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())

    def flush(self) -> None:
        """Every buffered metric point, to the sender: with the points of earlier flushes it has
        not sent yet, in requests of at most 1000."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        with self._outbox_lock:
            self._outbox.extend(pending)
            if self._outbox_queued:
                return  # the queued request takes these too
            self._outbox_queued = True
        self._sender.submit(self._send_outbox)

    def _send_outbox(self) -> None:
        with self._outbox_lock:
            points, self._outbox, self._outbox_queued = self._outbox, [], False
        for start in range(0, len(points), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=points[start : start + _MAX_METRICS], synchronous=True)

    def _send(self, **batch: Any) -> None:
        def send() -> None:
            self.client.log_batch(self.run_id, **batch, synchronous=True)

        self._sender.submit(send)

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
            self._send(params=new[start : start + _MAX_PARAMS])

    def tag(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._send(tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def record_checkpoint(self, path: str) -> None:
        """The trial's best checkpoint: the file itself with mlflow.save_models, else its path."""
        if not path:
            return
        if self.save_models:
            self._sender.submit(lambda: self.client.log_artifact(self.run_id, path, "checkpoints"))
        else:
            self.tag({"bench.checkpoint_path": path})

    def lightning_logger(self) -> EpochBatchLogger:
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
            error = mask_text(outcome.error)
            self._sender.submit(lambda: self.client.log_text(self.run_id, error, "error.txt"))
        pending, self._pending = self._pending, []
        self._sender.drain()  # what the trial logged before, sent in order before its run ends
        try:  # the last epoch's points, the objective and the state in one request
            self.client.log_batch(self.run_id, metrics=pending[:_MAX_METRICS], tags=tags, synchronous=True)
            for start in range(_MAX_METRICS, len(pending), _MAX_METRICS):
                self.client.log_batch(self.run_id, metrics=pending[start : start + _MAX_METRICS], synchronous=True)
        finally:
            _terminate(self.client, self.run_id, status)
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
        self.flush()
        self._sender.drain()
        if self.standalone:
            _terminate(self.client, self.run_id, "KILLED")


def _job_choices(config: DictConfig) -> Any:
    """The options the job's config chose per group (hydra.runtime.choices): from Hydra's own node in
    a job, else from the config itself (a config composed with Hydra's node)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices
    return OmegaConf.select(config, "hydra.runtime.choices", default=None)


def _terminate(client: MlflowClient, run_id: str, status: str) -> None:
    """The run's status and end time, in one request: bench's one private MLflow call (mlflow<4 is
    pinned in pyproject.toml; tests/test_trial_logger.py fails when it stops closing runs).
    MlflowClient.set_terminated first shuts down MLflow's async-logging queue (about 1 s per trial
    here, though bench never queues: sender.py sends) and, on an HTTP store, asks for the run again
    to print a link to it (MLflow 3.x: _log_url)."""
    from mlflow.entities import RunStatus
    from mlflow.utils.time import get_current_time_millis

    client._tracking_client.store.update_run_info(
        run_id, run_status=RunStatus.from_string(status), end_time=get_current_time_millis(), run_name=None
    )
