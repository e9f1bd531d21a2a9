"""Cost of per-epoch MLflow logging, against logging disabled.

    python benchmarks/mlflow_overhead.py [--epochs 30] [--train]

1. Logging alone: the Lightning logger train() uses (a TrialLogger's, bench.tracking.trial_logger:
   one log_batch per epoch, sent by the trial's own thread), bound to a run on a local
   `mlflow server` over SQLite (bench's default store in a sweep), fed what a synthetic_seg epoch
   logs: one train-step call per batch (4 batches of 8 tiles) and one validation call with the
   task's ~15 metrics. Prints the time the training loop spends per logged epoch, and checks
   that every point arrived.
2. With --train: train() on synthetic_seg for N epochs in one process, alternately with a
   TrialLogger (SQLite) and without, twice each, and prints the best wall time per epoch of
   each (noisy on a shared 2-core machine: the logging-alone figure is the one to trust).
What tracking costs a trial outside its fit: benchmarks/trial_logger_overhead.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SEG_VAL_METRICS = [
    "val/loss",
    "val/mIoU",
    "val/mIoU_Micro",
    "val/F1_Score",
    "val/Accuracy",
    "val/Pixel_Accuracy",
    "val/Boundary_mIoU",
    "val/IoU_0",
    "val/IoU_1",
    "val/Class_Accuracy_0",
    "val/Class_Accuracy_1",
    "train/mIoU",
    "train/Accuracy",
    "train/F1_Score",
    "train/Pixel_Accuracy",
]
STEPS_PER_EPOCH = 4


def logging_alone(epochs: int) -> float:
    import mlflow
    from hydra.core.utils import JobReturn, JobStatus

    from bench.tracking.server import LocalTrackingServer
    from bench.tracking.trial_logger import TrialLogger
    from hydra_plugins.bench_sweeper.api import judge

    tmp = Path(tempfile.mkdtemp(prefix="bench-mlflow-overhead-"))
    server = LocalTrackingServer(f"sqlite:///{tmp}/mlflow.db", (tmp / "artifacts").as_uri(), tmp / "server.log")
    url = server.start()
    try:
        client = mlflow.MlflowClient(url)
        run_id = client.create_run(client.create_experiment("overhead")).info.run_id
        trial = TrialLogger(url, run_id)
        logger = trial.lightning_logger()  # what train() uses
        step = 0
        started = time.perf_counter()
        for epoch in range(epochs):
            for _ in range(STEPS_PER_EPOCH):
                logger.log_metrics({"train/loss": 0.5, "train/loss_step": 0.5}, step=step)
                step += 1
            logger.log_metrics({name: 0.5 + epoch * 0.01 for name in SEG_VAL_METRICS} | {"epoch": epoch}, step=step)
        per_epoch = (time.perf_counter() - started) / epochs  # what the training loop waits for
        trial.close(judge(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5), objectives=None))
        points = len(client.get_metric_history(run_id, "val/mIoU"))
        assert points == epochs, points
        return per_epoch
    finally:
        server.stop()


def with_training(epochs: int) -> tuple[float, float]:
    import mlflow
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import JobReturn, JobStatus

    import bench  # noqa: F401
    from bench.paths import CONFIG_DIR
    from bench.tracking.trial_logger import TrialLogger
    from bench.train import train
    from hydra_plugins.bench_sweeper.api import judge

    tmp = Path(tempfile.mkdtemp(prefix="bench-mlflow-train-"))

    def run(tracked: bool) -> float:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[f"output_dir={tmp / str(tracked)}", f"task.max_epochs={epochs}", f"task.patience={epochs}"],
            )
        started = time.perf_counter()
        if tracked:
            client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
            trial = TrialLogger(client.tracking_uri, client.create_run("0").info.run_id)
            value = train(cfg, trial)
            trial.close(judge(JobReturn(status=JobStatus.COMPLETED, _return_value=value), objectives=None))
        else:
            train(cfg)
        return (time.perf_counter() - started) / epochs

    run(False)  # warm-up: imports, dataset generation
    plain, tracked = [], []
    for _ in range(2):  # interleaved, so drift on a shared machine hits both alike
        plain.append(run(False))
        tracked.append(run(True))
    return min(plain), min(tracked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train", action="store_true")
    args = parser.parse_args()
    per_epoch = logging_alone(args.epochs)
    print(
        f"TrialLogger's Lightning logger -> local mlflow server (SQLite): {per_epoch * 1000:.1f} ms per logged epoch "
        f"({STEPS_PER_EPOCH} step calls + 1 validation call with {len(SEG_VAL_METRICS)} metrics)"
    )
    if args.train:
        plain, tracked = with_training(min(args.epochs, 8))
        print(
            f"train() synthetic_seg: {plain:.2f} s/epoch without MLflow, {tracked:.2f} s/epoch with "
            f"(difference {100 * (tracked - plain) / plain:+.1f}%)"
        )


if __name__ == "__main__":
    main()
