"""MLflow tracking: the Hydra callback and its helpers (imported lazily; no torch)."""

from bench.tracking.callback import MLflowTracking

__all__ = ["MLflowTracking"]
