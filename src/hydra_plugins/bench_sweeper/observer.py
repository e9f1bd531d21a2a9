"""Public names for Hydra callbacks that follow a sweep: see _observer.py for the hooks."""

from ._observer import TRACKER_RUN_ID_ATTR, SweepObserver

__all__ = ["SweepObserver", "TRACKER_RUN_ID_ATTR"]
