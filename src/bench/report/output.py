"""Where a report is written: a folder it may write, one writer at a time, and its copy in MLflow.

Two reports written to one --out at once mixed their files (report.html from one input,
scores.csv from the other) and both exited 0. The folder is locked (flock on .bench-report.lock in
it) while a report writes there, and a second writer is refused with a sentence. Logging to the
sweeps' MLflow runs comes last: the files are the result, so a tracking server that does not answer
is a warning, not a failure.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import ReportError

LOCK = ".bench-report.lock"


def check_out(out: Path) -> None:
    """--out must be a folder this user can write, or one it can create; nothing is created here."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder: give a folder for the report")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ReportError(f"--out {out} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ReportError(f"--out {out} cannot be written: {probe} is not writable by this user; give another --out")


@contextmanager
def writing(out: Path) -> Iterator[Path]:
    """The output folder, created and held by this report alone while it writes."""
    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ReportError(f"--out {out} cannot be written ({exc.strerror}); give another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ReportError(
                f"another bench.report is writing to {out} ({holder or 'its pid unknown'}): wait for it, "
                "or give this one another --out"
            ) from None
        raise ReportError(f"--out {out} cannot be locked ({exc.strerror}); give a folder on a local disk") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    try:
        yield out
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)


def log_to_mlflow(sweep_dirs: list[Path], out: Path) -> None:
    """Into each input sweep's benchmark run, as the artifact folder report/; what fails is said."""
    from bench.tracking.sweep_callback import TRACKING_FILE

    for sweep in sweep_dirs:
        info = sweep / TRACKING_FILE
        if not info.is_file():
            continue
        try:
            where = json.loads(info.read_text())
            uri, run = where["tracking_uri"], where["benchmark_run"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(
                f"bench.report: warning: {info} cannot be read ({exc}): the report was not logged to MLflow; its "
                f"files are in {out}",
                file=sys.stderr,
            )
            continue
        # A server that does not answer: one retry, a short wait (MLflow's defaults retry for minutes).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            from mlflow import MlflowClient

            MlflowClient(uri).log_artifacts(run, str(out), "report")
        except Exception as exc:  # any network or server failure means the same to the user
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            print(
                f"bench.report: warning: the report could not be logged to MLflow run {run} at {uri} ({reason}); "
                f"its files are in {out}",
                file=sys.stderr,
            )
            continue
        print(f"logged to MLflow run {run} ({where.get('experiment', '')})")
