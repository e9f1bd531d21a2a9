"""Writing a file so that its readers never see half of it: the one way the sweeper writes the
files others read while it runs (results.csv, the sweep's identity, a job's masked .hydra files)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], newline: str | None = None) -> Iterator[TextIO]:
    """A text file to write that takes `path`'s place only once it is whole. The temporary file is
    beside it (os.replace is atomic within one filesystem) and named by process, so two processes
    writing the same path (jobs on several nodes) never share one; it is removed if writing fails."""
    target = Path(path)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", newline=newline) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
