"""Tracking for any Hydra app that logs with MLflow's fluent API (`mlflow.log_metric`), not bench.

bench's own jobs never use this: bench's entry point opens a TrialLogger and hands it to train()
(bench/__main__.py), and conf/config.yaml names the driver-only SweepTracking. An app that has no
such entry point (tests/stub_app, a user's own Hydra app under the bench sweeper) names
MLflowTracking instead: the same driver side, plus two job hooks that open the run the driver made
for the job as MLflow's active run, so the app's fluent calls land in it, and close it with the
job's outcome.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from bench.tracking.sweep_callback import SweepTracking
from bench.tracking.trial_logger import TrialLogger


class MLflowTracking(SweepTracking):
    def _driver_reset(self) -> None:
        super()._driver_reset()
        self.job: TrialLogger | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra = HydraConfig.get()
        self.job = TrialLogger.for_job(
            config, list(hydra.overrides.task), hydra.runtime.output_dir, hydra.mode == RunMode.MULTIRUN
        )
        if self.job is not None:
            import mlflow

            mlflow.set_tracking_uri(self.job.tracking_uri)
            mlflow.start_run(run_id=self.job.run_id)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.job is None:
            return
        import mlflow

        from hydra_plugins.bench_sweeper.api import judge

        status = "FAILED"
        try:
            status = self.job.close(judge(job_return, objectives=None))
        finally:
            if mlflow.active_run() is not None:
                mlflow.end_run(status)  # off MLflow's stack, with the status close() gave the run
            self.job = None

    def on_trial_end(
        self, cell: Any, trial: Any, job_return: Any, error: str | None, interrupted: bool = False, phase: str = "tune"
    ) -> None:
        if interrupted and self.job is not None:
            # The trial ran in this process and was cut short: its fluent run would otherwise be
            # closed FINISHED by MLflow's exit handler.
            import mlflow

            mlflow.end_run("KILLED")
            self.job = None
        super().on_trial_end(cell, trial, job_return, error, interrupted, phase)
