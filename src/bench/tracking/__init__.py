"""MLflow tracking, in two roles (imported lazily; no torch):

SweepTracking    the driver's Hydra callback and sweep observer: benchmark, cell and trial runs
                 (bench.tracking.sweep_callback; conf/config.yaml names it)
TrialLogger      the job's logger, which train() receives: one run, by id, no global active run
                 (bench.tracking.trial_logger)
MLflowTracking   SweepTracking plus job hooks for other Hydra apps that log with MLflow's
                 fluent API (bench.tracking.fluent_jobs)
"""

from bench.tracking.fluent_jobs import MLflowTracking
from bench.tracking.sweep_callback import SweepTracking
from bench.tracking.trial_logger import TrialLogger

__all__ = ["MLflowTracking", "SweepTracking", "TrialLogger"]
