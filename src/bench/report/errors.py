"""The report's bad-input error: a sentence the CLI prints without a traceback."""

from bench.errors import BenchError


class ReportError(BenchError):
    """An input, normalizer or group file the report cannot use; the message says why and what to do."""
