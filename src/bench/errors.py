"""Errors bench raises for bad input: each message says what is wrong and what to do.

Each is also a sweeper CellError: every trial of a sweep cell would hit the same error, so the
sweeper stops that cell at once instead of spending its budget.
"""

from hydra_plugins.bench_sweeper.api import CellError, SweepError


class BenchError(CellError):
    """Base class: a problem with the benchmark's configuration or environment. The message is the
    whole story: the CLI prints it without a traceback."""


class ConfigError(BenchError, ValueError):
    """The composed config is invalid (unknown task type, bad direction, impossible value...)."""


class DatasetNotFoundError(BenchError, FileNotFoundError):
    """A task's dataset is not where the config says it is."""


class PretrainedWeightsError(BenchError, RuntimeError):
    """Pretrained weights are needed but cannot be fetched or found."""


class MetricNotLoggedError(BenchError, KeyError):
    """The task's metric is not among the metrics TerraTorch logs."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class TestSplitError(BenchError, RuntimeError):
    """The test split cannot be evaluated (unreadable files, a metric it does not log), or a
    tuning trial asked for it."""


class SplitOverlapError(BenchError, ValueError):
    """A task's test samples are its validation samples: its test scores would be the validation
    scores that chose the model."""


class ReportError(BenchError):
    """An input, normalizer or group file the report cannot use; the message says why and what to do."""


# What the CLI prints as a plain sentence: bench's errors and the sweeper's.
USER_ERRORS = (BenchError, SweepError)
