"""A sweep directory's identity and its driver lock: one live driver per sweep.

`sweep.json` holds the sweep's id, made once when the directory is first used. Study names carry
it, so sweeps sharing one Optuna storage never continue or interrupt each other's studies. It also
lists the sweep's axes (task, model, ...), so that resuming one cell with `task=a` finds the cell
`task=a` of a sweep started with `task=a,b`.

`driver.lock` is held with flock(2) for as long as a driver runs the sweep, and names that driver
(pid, host, start time). The kernel releases the lock when its process dies, however it dies, so a
stale lock is simply one nobody holds: the next driver takes it over and says whose it was. flock
works on local filesystems and on NFS (Linux emulates it with POSIX locks there).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from ._errors import SweepConfigError, SweepLockedError
from ._files import atomic_write
from ._integrity import IDENTITY, SweepDirError, listing, produced, read_identity

log = logging.getLogger(__name__)

LOCK = "driver.lock"


def check_creatable(path: Path, what: str, key: str, is_dir: bool = True) -> None:
    """Raise a sentence if `path` (a directory, or a file) could not be created or written.
    Nothing is created here."""
    path = path.absolute()
    if path.exists() and path.is_dir() != is_dir:
        raise SweepConfigError(
            f"{key}={path}: {what} cannot be used: {path} exists and is not a "
            f"{'directory' if is_dir else 'file'}. Pick another {key}."
        )
    probe = path
    while not probe.exists():
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise SweepConfigError(
            f"{key}={path}: {what} cannot be created because {probe} is not a directory. Pick another {key}."
        )
    if not os.access(probe, os.W_OK | (os.X_OK if probe.is_dir() else 0)):
        raise SweepConfigError(
            f"{key}={path}: {what} cannot be written: {probe} is not writable by this user. Pick another {key}."
        )


class SweepDir:
    """Use as `with SweepDir(path, axes) as sweep:`; sweep.sweep_id is stable across resumes.

    label_keys are recorded when the dir is created (a resume keeps them: _plan.resumed_label_keys);
    latest_link, when given, is pointed at this dir once it is locked (update_latest_link)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        axes: list[str],
        label_keys: list[str] | None = None,
        latest_link: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.axes = axes
        self.label_keys = list(label_keys or [])
        self.latest_link = latest_link
        self.sweep_id = ""
        self.resumed = False
        self._fd: int | None = None

    def __enter__(self) -> SweepDir:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._identify()
        except BaseException:
            self._unlock()
            raise
        if self.latest_link:
            update_latest_link(Path(self.latest_link), self.path)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unlock()

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SweepLockedError(
                    f"{self.path} is being run by another driver: {_describe(holder)}. Wait for it to finish or stop "
                    f"it (kill {holder.get('pid', '<pid>')} on {holder.get('host', 'its host')}), or use another "
                    "hydra.sweep.dir."
                ) from None
            raise SweepConfigError(
                f"cannot lock {self.path / LOCK} ({exc.strerror}): this filesystem does not support file locks, so "
                "bench cannot make sure only one driver runs this sweep. Use a hydra.sweep.dir on a filesystem "
                "that does (local disk, NFS)."
            ) from None
        previous = _read_holder(fd)
        if previous:
            log.warning("taking over %s from a driver that is no longer running (%s)", self.path, _describe(previous))
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean exit leaves no holder to report
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def _identify(self) -> None:
        identity = read_identity(self.path)
        self.resumed = bool(identity)
        if not identity and (left := produced(self.path)):  # checked in the plan too; this holds the lock
            raise SweepDirError(f"{self.path} holds {listing(left)} but no {IDENTITY}; use a new hydra.sweep.dir")
        updated = dict(identity)
        if not identity:
            updated = {
                "sweep_id": uuid.uuid4().hex[:12],
                "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            }
        # Recorded once: a resume names its cells as the dir did (the plan read them, or for a dir
        # without them decided from its studies' labels: _plan.resumed_label_keys).
        updated.setdefault("label_keys", self.label_keys)
        self.sweep_id = updated["sweep_id"]
        updated["axes"] = list(dict.fromkeys([*updated.get("axes", []), *self.axes]))
        if updated != identity:
            with atomic_write(self.path / IDENTITY) as f:
                f.write(json.dumps(updated))


def update_latest_link(link: Path, sweep_dir: Path) -> None:
    """Point `link` at `sweep_dir` with a relative target, atomically (a new link renamed over the
    old one), so `<link>` always names a whole sweep dir. Only for a sweep dir inside the link's own
    folder (a sweep elsewhere is not "the latest" of that folder), and never over anything that is
    not a symlink (a user's own file or folder of that name): that is left alone, with a warning."""
    link = link.absolute()
    target = sweep_dir.absolute()
    if target.parent != link.parent:
        return
    if os.path.lexists(link) and not link.is_symlink():
        log.warning("%s is not a symlink, so it is left alone (not pointed at the newest sweep)", link)
        return
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
        os.replace(temporary, link)
    except OSError as exc:  # a filesystem without symlinks: the sweep does not depend on the link
        temporary.unlink(missing_ok=True)
        log.warning("could not point %s at %s: %s", link, target, exc.strerror or exc)


def running_driver(path: str | os.PathLike[str]) -> str | None:
    """Who runs the sweep in `path` now ("pid 12 on host h, started ..."), or None; reads only."""
    try:
        fd = os.open(Path(path) / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _describe(_read_holder(fd))
    finally:
        os.close(fd)  # closing releases a lock we took
    return None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a driver that has not written its details yet"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
