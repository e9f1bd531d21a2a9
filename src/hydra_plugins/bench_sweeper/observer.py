"""Public names for Hydra callbacks that follow a sweep: see _observer.py for the hooks."""

from ._cost import ATTR_CPU_HOURS, ATTR_GPU_HOURS
from ._observer import TRACKER_RUN_ID_ATTR, SweepObserver

# The trial user attributes holding what a finished trial cost (its grant x its run time).
COST_ATTRS = (ATTR_GPU_HOURS, ATTR_CPU_HOURS)

__all__ = ["COST_ATTRS", "SweepObserver", "TRACKER_RUN_ID_ATTR"]
