"""Errors the bench sweeper raises for the user, and the marker a job's error uses to stop its cell.

The module name starts with "_" on purpose: Hydra's plugin scan re-executes every other module of a
plugin package, which would recreate these classes after callers imported them and break
`isinstance` and `except` on them.
"""


class SweepError(Exception):
    """Base class: the message says what is wrong and what to do; a CLI prints it without a traceback."""


class SweepConfigError(SweepError, ValueError):
    """A hydra.sweeper setting or a cell's configuration that cannot be used."""


class SearchSpaceError(SweepConfigError):
    """A search-space entry that cannot become an Optuna distribution."""


class ResumeMismatchError(SweepConfigError):
    """A resumed cell was started with a different experiment (metric, search space, config...)."""


class CellsNotReadyError(SweepConfigError):
    """The app's cell_check found problems (missing data, unreachable weights) in some cells; each
    is listed once, with the cells it stops."""


class SweepLockedError(SweepError, RuntimeError):
    """Another live driver is running this sweep."""


class CellsStoppedError(SweepError, RuntimeError):
    """Some cells stopped before their budget; the others finished. Details are in results.csv."""


class LaunchError(SweepError, RuntimeError):
    """The launcher refused a trial (e.g. sbatch rejected the resource request, or no Ray node or
    SLURM partition can ever hold it). Every later trial would be refused too: the sweep stops."""


class CellError(Exception):
    """Base for errors a job raises that every trial of its cell would repeat (a bad config, a
    missing dataset, a metric never logged): the sweeper stops that cell at once instead of spending
    its budget. Applications subclass it for such errors."""


class SweepInterrupted(BaseException):
    """The driver was told to stop (SIGTERM). A BaseException, like KeyboardInterrupt, so that no
    `except Exception` in a trial running in the driver swallows it."""
