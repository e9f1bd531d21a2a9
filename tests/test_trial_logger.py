"""The job side of tracking (bench.tracking.trial_logger) against a real MLflow SQLite store: one
run by id, no global active run, per-epoch batches, the run's final state from the job's outcome."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from omegaconf import OmegaConf

from bench.tracking.trial_logger import TrialLogger
from hydra_plugins.bench_sweeper.api import judge
from tests.helpers import wait_for

pytestmark = pytest.mark.duration(15)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One SQLite store for the module: creating and migrating one takes seconds."""
    root = tmp_path_factory.mktemp("store")
    return f"sqlite:///{root / 'mlflow.db'}", root


@pytest.fixture
def store(database, request):
    """An experiment of the test's own, and runs in it as the sweep's driver makes them."""
    uri, root = database
    client = MlflowClient(uri)
    experiment = client.create_experiment(request.node.name, artifact_location=(root / request.node.name).as_uri())
    return uri, client, lambda: client.create_run(experiment).info.run_id


def _returned(value) -> JobReturn:
    return JobReturn(status=JobStatus.COMPLETED, _return_value=value)


def _raised(exc: BaseException) -> JobReturn:
    try:
        raise exc
    except BaseException as raised:  # with its traceback, as Hydra's job runner keeps it
        return JobReturn(status=JobStatus.FAILED, _return_value=raised)


def _artifact(client, run_id: str, name: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, name, str(tmp_path))).read_text()


def test_a_trial_logs_into_the_drivers_run_by_id_without_an_active_run(store, tmp_path):
    uri, client, new_run = store
    run_id = new_run()
    config = OmegaConf.create({"db_password": "hunter2-secret", "hparams": {"lr": 0.1}})
    logger = TrialLogger(uri, run_id)
    logger.log_job(config, ["hparams.lr=0.1", "+db_password=hunter2-secret"], "/jobs/0")
    logger.log_metrics({"val/mIoU": 0.5}, step=1)
    logger.close(judge(_returned({"value": 0.5, "test_value": 0.4}), objectives=None))

    assert mlflow.active_run() is None
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["bench.state"] == "COMPLETE"
    assert run.data.metrics == {"val/mIoU": 0.5, "objective": 0.5}
    assert run.data.tags["bench.output_dir"] == "/jobs/0"
    config_text = _artifact(client, run_id, "config.yaml", tmp_path)
    overrides = _artifact(client, run_id, "overrides.yaml", tmp_path)
    assert "hunter2-secret" not in config_text + overrides
    assert "db_password: '***'" in config_text and "lr: 0.1" in config_text and "hparams.lr=0.1" in overrides


def test_a_multi_objective_trial_logs_one_metric_per_objective(store):
    uri, client, new_run = store
    run_id = new_run()
    TrialLogger(uri, run_id).close(judge(_returned((0.5, 12.0)), objectives=None))
    assert client.get_run(run_id).data.metrics == {"objective_0": 0.5, "objective_1": 12.0}


def test_a_pruned_trial_is_killed_and_a_failed_one_keeps_its_masked_traceback(store, tmp_path):
    uri, client, new_run = store
    pruned, failed = new_run(), new_run()
    TrialLogger(uri, pruned).close(judge(_raised(optuna.TrialPruned("at epoch 2")), objectives=None))
    run = client.get_run(pruned)
    assert (run.info.status, run.data.tags["bench.state"], run.data.tags["bench.pruned"]) == (
        "KILLED",
        "PRUNED",
        "true",
    )

    logger = TrialLogger(uri, failed)
    logger.log_metrics({"val/loss": 1.0}, step=0)  # logged before it failed: kept
    logger.close(judge(_raised(RuntimeError("cannot reach postgresql://u:pw-hunter2@db/x")), objectives=None))
    run = client.get_run(failed)
    assert (run.info.status, run.data.tags["bench.state"]) == ("FAILED", "FAIL")
    assert run.data.metrics == {"val/loss": 1.0}
    error = _artifact(client, failed, "error.txt", tmp_path)
    assert "Traceback" in error and "RuntimeError: cannot reach postgresql://u:***@db/x" in error
    assert "pw-hunter2" not in error


def test_the_job_around_closes_its_run_and_lets_the_error_through(store):
    uri, client, new_run = store
    ok, failed = new_run(), new_run()
    assert TrialLogger(uri, ok).around(lambda: 0.25) == 0.25
    assert client.get_run(ok).data.metrics["objective"] == 0.25

    def fails() -> float:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        TrialLogger(uri, failed).around(fails)
    assert client.get_run(failed).info.status == "FAILED"


def test_an_interrupted_sweep_job_leaves_its_run_to_the_driver_and_a_standalone_one_is_killed(store, tmp_path):
    uri, client, new_run = store
    in_sweep = new_run()

    def interrupted() -> float:
        raise KeyboardInterrupt

    logger = TrialLogger(uri, in_sweep)
    logger.log_metrics({"val/loss": 1.0}, step=0)
    with pytest.raises(KeyboardInterrupt):
        logger.around(interrupted)
    run = client.get_run(in_sweep)
    assert run.info.status == "RUNNING" and run.data.metrics == {"val/loss": 1.0}  # the driver closes it

    settings = OmegaConf.create(
        {"experiment": "single", "tracking_uri": uri, "artifact_location": (tmp_path / "single").as_uri()}
    )
    config = OmegaConf.create({"mlflow": settings, "hparams": {"lr": 0.01}})
    standalone = TrialLogger.standalone_run(config, settings, save_models=False)
    with pytest.raises(KeyboardInterrupt):
        standalone.around(interrupted)
    run = client.get_run(standalone.run_id)
    assert run.info.status == "KILLED" and run.data.tags["bench.level"] == "run"
    assert run.data.params == {"hparams.lr": "0.01"}


def test_the_lightning_logger_sends_each_epoch_when_the_next_one_starts_and_the_last_at_the_close(store):
    uri, client, new_run = store
    run_id = new_run()
    logger = TrialLogger(uri, run_id)
    lightning = logger.lightning_logger()

    def points(name: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))

    lightning.log_metrics({"train/loss": 0.9, "epoch": 0}, step=3)
    lightning.log_metrics({"val/mIoU": 0.1, "epoch": 0}, step=3)
    assert points("val/mIoU") == []  # epoch 0 still open: nothing sent yet
    lightning.log_metrics({"train/loss": 0.7, "epoch": 1}, step=7)
    # Epoch 0, in one batch, sent by the trial's own thread while the next epoch trains.
    wait_for(lambda: points("val/mIoU") == [(3, 0.1)], 30, "epoch 0 to be sent")
    assert points("train/loss") == [(3, 0.9)]
    lightning.log_hyperparams({"model_args": {"backbone": "resnet18"}, "api_key": "sk-not-for-mlflow"})
    lightning.finalize("success")  # the end of the fit: the trial, not Lightning, closes the run
    wait_for(lambda: client.get_run(run_id).data.params, 30, "the hyperparameters to be sent")
    assert client.get_run(run_id).data.params == {"model_args/backbone": "resnet18", "api_key": "***"}
    assert client.get_run(run_id).info.status == "RUNNING"
    logger.close(judge(_returned(0.1), objectives=None))  # the last epoch goes with the closing request
    assert points("train/loss") == [(3, 0.9), (7, 0.7)] and points("objective") == [(0, 0.1)]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_epochs_flushed_while_the_store_is_busy_go_in_one_request(store):
    """A trial that logs faster than its store answers sends fewer, larger requests, not one per
    epoch queued behind each other (benchmarks/tracking_load.py: 200 trials at 10 points/s)."""
    import threading

    uri, client, new_run = store
    run_id = new_run()
    logger = TrialLogger(uri, run_id)
    requests: list[int] = []
    real = logger.client.log_batch

    def counted(run, metrics=(), **kwargs):
        if metrics:
            requests.append(len(metrics))
        return real(run, metrics=metrics, **kwargs)

    logger.client.log_batch = counted
    store_busy = threading.Event()
    logger._sender.submit(store_busy.wait)  # the store still answering an earlier request
    for epoch in range(3):
        logger.log_metrics({"val/mIoU": 0.1 * epoch, "train/loss": 1.0 - 0.1 * epoch}, step=epoch)
        logger.flush()
    store_busy.set()
    wait_for(lambda: requests, 30, "the queued epochs to be sent")
    assert requests == [6]  # three epochs, two points each, in one request
    logger.log_metrics({"val/mIoU": 0.5}, step=3)
    logger.flush()  # the store is free again: this epoch goes alone, at once
    wait_for(lambda: len(requests) == 2, 30, "epoch 3 to be sent")
    logger.close(judge(_returned(0.5), objectives=None))
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/mIoU"))
    assert history == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.5)]
    assert requests == [6, 1, 1]  # the last: the closing request, with the objective
