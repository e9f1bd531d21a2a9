"""What tracking costs a trial outside its fit: the job-side logger against the path it replaced.

    python benchmarks/trial_logger_overhead.py [--trials 5] [--epochs 8]

Each trial logs what a synthetic_seg trial logs (bench's composed config and overrides, masked;
per epoch 4 training-step calls and one validation call with the task's ~15 metrics, as Lightning
makes them) into a run the "driver" created, then closes it COMPLETE. Timed per trial:
    open    before the fit: the run bound, config.yaml and overrides.yaml, the output-dir tag
    close   after the fit: the last metrics, the objective and bench.state, the run terminated
    in fit  what the training loop waited on, per epoch (each epoch stands for --epoch-s of training)
Two stores, as bench's launchers use them:
    local      the embedded SQLite file, written directly by trials in the driver's process
    served     bench's authenticated `mlflow server` over SQLite, over HTTP: what Ray workers and
               SLURM jobs log to; the trials run in a fresh process each (a new job on a node),
               the MLflow import excluded (a worker pays it once, with torch's)
Two paths:
    TrialLogger         bench.tracking.trial_logger: MlflowClient by run id, one log_batch per epoch
    before (fluent)     the job hooks of the previous MLflowTracking: mlflow.start_run(run_id),
                        Lightning's MLFlowLogger logging asynchronously, flush_async_logging and
                        end_run at the end (1.95 s per trial in the profile of issue 25)
The goal: under 0.1 s per trial outside the fit (open + close) on every launcher.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What a synthetic_seg epoch logs: the same list the logging-alone benchmark feeds (run as a script,
# this folder is on sys.path).
from mlflow_overhead import SEG_VAL_METRICS

STEPS_PER_EPOCH = 4
OVERRIDES = ["task=synthetic_seg", "model=resnet18", "hparams.lr=0.001", "+trial.number=0"]


def _config():
    from hydra import compose, initialize_config_dir

    import bench  # noqa: F401  (resolvers)
    from bench.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=["task=synthetic_seg"], return_hydra_config=False)


EPOCH_S = 0.5  # the training an epoch stands for (--epoch-s): the trials fit in 4-6 s


def _epochs(logger, epochs: int) -> float:
    """What Lightning sends a logger over `epochs` epochs, each after EPOCH_S of "training" (a
    sleep: like torch's kernels, it leaves the interpreter to other threads); returns the seconds
    per epoch the logging calls took, the training excluded."""
    step, logging = 0, 0.0
    for epoch in range(epochs):
        time.sleep(EPOCH_S)
        started = time.perf_counter()
        for _ in range(STEPS_PER_EPOCH):
            logger.log_metrics({"train/loss_step": 0.5, "epoch": epoch}, step=step)
            step += 1
        logger.log_metrics({name: 0.5 + epoch * 0.01 for name in SEG_VAL_METRICS} | {"epoch": epoch}, step=step)
        logger.log_metrics({"train/loss_epoch": 0.4, "epoch": epoch}, step=step)
        logging += time.perf_counter() - started
    return logging / epochs


def trial_logger_trial(uri: str, run_id: str, epochs: int, config) -> dict[str, float]:
    from hydra.core.utils import JobReturn, JobStatus

    from bench.tracking.trial_logger import TrialLogger
    from hydra_plugins.bench_sweeper.api import judge

    started = time.perf_counter()
    logger = TrialLogger(uri, run_id)
    logger.log_job(config, OVERRIDES, "/tmp/job")
    lightning = logger.lightning_logger()
    opened = time.perf_counter()
    per_epoch = _epochs(lightning, epochs)
    lightning.finalize("success")  # Lightning's end of fit
    fit_end = time.perf_counter()
    logger.close(judge(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5), objectives=None))
    return {"open": opened - started, "close": time.perf_counter() - fit_end, "epoch": per_epoch}


def fluent_trial(uri: str, run_id: str, epochs: int, config) -> dict[str, float]:
    """The previous job side (MLflowTracking.on_job_start/on_job_end and bench.tracking.job)."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger
    from omegaconf import OmegaConf

    from bench.tracking.trial_logger import app_config
    from hydra_plugins.bench_sweeper.api import mask_override

    class RunOwnedByTheJob(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:
            pass

    started = time.perf_counter()
    mlflow.set_tracking_uri(uri)
    mlflow.start_run(run_id=run_id)
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(app_config(config))), "config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create([mask_override(o) for o in OVERRIDES])), "overrides.yaml")
    mlflow.set_tag("bench.output_dir", "/tmp/job")
    lightning = RunOwnedByTheJob(tracking_uri=uri, run_id=run_id, synchronous=False)
    opened = time.perf_counter()
    per_epoch = _epochs(lightning, epochs)
    fit_end = time.perf_counter()
    mlflow.log_metric("objective", 0.5)
    mlflow.set_tag("bench.state", "COMPLETE")
    mlflow.flush_async_logging()
    mlflow.end_run("FINISHED")
    return {"open": opened - started, "close": time.perf_counter() - fit_end, "epoch": per_epoch}


PATHS = {"TrialLogger": trial_logger_trial, "before (fluent)": fluent_trial}


def _check(client, run_id: str, epochs: int) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["bench.state"] == "COMPLETE", run
    assert len(client.get_metric_history(run_id, "val/mIoU")) == epochs  # every point arrived
    assert run.data.metrics["objective"] == 0.5


def _artifacts(uri: str) -> str | None:
    """Next to a SQLite store; a served store has its own root (bench's server: --default-artifact-root)."""
    return (
        (Path(uri.removeprefix("sqlite:///")).parent / "artifacts_local").as_uri() if uri.startswith("sqlite") else None
    )


def in_this_process(uri: str, path: str, trials: int, epochs: int) -> list[dict[str, float]]:
    from mlflow import MlflowClient

    client, config = MlflowClient(uri), _config()
    experiment = client.create_experiment(f"{path} {time.time()}", artifact_location=_artifacts(uri))
    figures = []
    for _ in range(trials):
        run_id = client.create_run(experiment).info.run_id  # the driver's on_trial_prepared
        figures.append(PATHS[path](uri, run_id, epochs, config))
        _check(client, run_id, epochs)
    return figures


def in_fresh_processes(uri: str, path: str, trials: int, epochs: int) -> list[dict[str, float]]:
    """One process per trial, as a SLURM job (or a new Ray worker) is."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"{path} jobs {time.time()}", artifact_location=_artifacts(uri))
    figures = []
    for _ in range(trials):
        run_id = client.create_run(experiment).info.run_id
        job = subprocess.run(
            [sys.executable, __file__, "--job", path, uri, run_id, str(epochs), "--epoch-s", str(EPOCH_S)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
        figures.append(json.loads(job.stdout.splitlines()[-1]))
        _check(client, run_id, epochs)
    return figures


def _job(path: str, uri: str, run_id: str, epochs: int) -> None:
    import lightning.pytorch  # noqa: F401  (imported by every job before it logs: not tracking's cost)
    import mlflow  # noqa: F401

    config = _config()
    print(json.dumps(PATHS[path](uri, run_id, epochs, config)))


def _line(store: str, path: str, figures: list[dict[str, float]]) -> str:
    def median(key: str) -> float:
        return statistics.median(f[key] for f in figures)

    outside = statistics.median(f["open"] + f["close"] for f in figures)
    return (
        f"{store:<34} {path:<16} outside the fit {outside * 1000:7.1f} ms/trial "
        f"(open {median('open') * 1000:6.1f}, close {median('close') * 1000:7.1f})   "
        f"in the fit {median('epoch') * 1000:5.1f} ms/epoch"
    )


def main() -> None:
    global EPOCH_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-s", type=float, default=EPOCH_S, help="training time an epoch stands for")
    parser.add_argument("--job", nargs=4, metavar=("PATH", "URI", "RUN_ID", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    EPOCH_S = args.epoch_s
    if args.job:
        path, uri, run_id, epochs = args.job
        return _job(path, uri, run_id, int(epochs))

    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from bench.tracking.server import LocalTrackingServer
    from bench.tracking.store import prepare_embedded

    tmp = Path(tempfile.mkdtemp(prefix="bench-trial-logger-"))
    prepare_embedded(tmp / "local.db")
    local = f"sqlite:///{tmp / 'local.db'}"
    server = LocalTrackingServer(f"sqlite:///{tmp}/served.db", (tmp / "artifacts").as_uri(), tmp / "server.log")
    served = server.start()
    print(f"{args.trials} trials of {args.epochs} epochs of {EPOCH_S} s each; medians per trial")
    try:
        for path in PATHS:
            print(_line("local (SQLite, in the driver)", path, in_this_process(local, path, args.trials, args.epochs)))
        for path in PATHS:
            figures = in_fresh_processes(served, path, args.trials, args.epochs)
            print(_line("served (HTTP, Ray/SLURM job process)", path, figures))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
