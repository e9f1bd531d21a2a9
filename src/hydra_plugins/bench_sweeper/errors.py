"""Errors the bench sweeper raises for the user (no heavy imports: scanned by Hydra)."""


class SweepError(Exception):
    """Base class: the message says what is wrong and what to do."""

    # Lets a CLI print the message alone. Match on this, not on the class: Hydra re-executes
    # plugin modules while scanning, so these classes can be recreated after an import.
    user_facing = True


class SweepConfigError(SweepError, ValueError):
    """A hydra.sweeper setting or a cell's direction that cannot be used."""


class SearchSpaceError(SweepConfigError):
    """A search-space entry that cannot become an Optuna distribution."""


class CellsStoppedError(SweepError, RuntimeError):
    """Some cells stopped before their budget; the others finished. Details are in results.csv."""


class LaunchError(SweepError, RuntimeError):
    """The launcher refused a trial (e.g. sbatch rejected the resource request, or no Ray node can
    ever hold it). Every later trial would be refused too, so the sweep stops at once."""
