"""The embedding cache: one entry per (model weights, dataset, split, partition, preprocessing).

An entry is a folder `<cache dir>/<key>/` holding `features.npy` (float32), `labels.npy` and
`meta.json` (the key's inputs, FEATURES_VERSION, who built it and when, the embedding pass's time). The
key is the sha256 of the inputs (`entry_key`). An entry is written to `<cache dir>/.tmp-<uuid>/`
and renamed into place, so a reader never sees half of one; builders serialise on an flock'ed lock file
beside it (`<key>.lock`): the first to take the lock builds, the others block on the lock (no polling)
and then find the entry built. FEATURES_VERSION is checked, not hashed: an entry written by another
version of the features' code is rebuilt in place (a log sentence says so), never trusted, and never
left behind. numpy only; the embedding pass itself is the `build` callable (bench.probes.embeddings).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

# Bump when what is stored for the same inputs changes (pooling, dtype, layout): older entries are rebuilt.
FEATURES_VERSION = 1
FILES = ("features.npy", "labels.npy")


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    meta: dict[str, Any]
    built: bool  # True: this call ran the embedding pass; False: a cache hit

    def arrays(self, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels); mmap=True maps them read-only instead of reading them (per-sample access)."""
        mode: Literal["r"] | None = "r" if mmap else None
        return np.load(self.path / "features.npy", mmap_mode=mode), np.load(self.path / "labels.npy", mmap_mode=mode)


def entry_key(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs, as canonical JSON (sorted keys)."""
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_identity(path: str | os.PathLike[str]) -> Any:
    """A local file: its size and mtime; a folder: every file under it, with size and mtime (a dataset
    whose files change gets another key); anything else (a URL, a hub name): as given."""
    p = Path(path).expanduser()
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        digest = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            st = f.stat()
            digest.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return [str(p.resolve()), digest.hexdigest()]
    return str(path)


def job_file_identity() -> Callable[[str], Any]:
    """file_identity, remembered for one job: a data root of many files is listed once, not once per split."""
    return functools.cache(file_identity)


def lookup(cache: Path, key: str, version: int = FEATURES_VERSION) -> Entry | None:
    """The entry, if it is there, complete and of this features version (FEATURES_VERSION, or a layout's
    own: bench.probes.frozen); None otherwise."""
    path = cache / key
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("features_version") != version:
        log.warning(
            "embedding cache entry %s was written by features version %s, not %s (this code's): it is rebuilt, not used",
            key,
            meta.get("features_version"),
            version,
        )
        return None
    if not all((path / name).is_file() for name in FILES):
        log.warning("embedding cache entry %s is missing files: it is rebuilt", key)
        return None
    return Entry(key, path, meta, built=False)


Build = Callable[[], tuple[Any, ...]]  # () -> (features, labels) or (features, labels, more meta)


def get_or_build(cache: Path, key: str, inputs: dict[str, Any], build: Build, version: int = FEATURES_VERSION) -> Entry:
    """The entry for `key`, built by `build()` (features, labels[, a dict of more meta]) when no valid one
    of `version` exists, once across processes: builders take an exclusive flock on `<key>.lock`, a loser
    blocks there until the winner has renamed its entry into place, then reads it."""
    found = lookup(cache, key, version)
    if found is not None:
        log.info("embedding cache hit: %s (%s)", key, found.meta.get("describe", ""))
        return found
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process builds this entry
        try:
            found = lookup(cache, key, version)  # built by the process that held the lock
            if found is not None:
                log.info("embedding cache hit after waiting for its builder: %s", key)
                return found
            return _build(cache, key, inputs, build, version)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(cache: Path, key: str, inputs: dict[str, Any], build: Build, version: int) -> Entry:
    log.info("embedding cache miss: computing %s (%s)", key, inputs.get("describe", ""))
    start, cpu = time.perf_counter(), time.process_time()
    features, labels, *more = build()
    tmp = cache / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        np.save(tmp / "features.npy", np.ascontiguousarray(features))
        np.save(tmp / "labels.npy", np.ascontiguousarray(labels))
        meta = {
            **inputs,
            "key": key,
            **(more[0] if more else {}),
            "features_version": version,
            "shape": list(features.shape),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "built_by": f"{os.uname().nodename}:{os.getpid()}",
            "wall_s": round(time.perf_counter() - start, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        old = cache / key
        if old.exists():  # another version's entry, or a damaged one: out of the way, then gone
            trash = cache / f".tmp-{uuid.uuid4().hex}"
            os.rename(old, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("embedding cache entry %s written (%.1f s)", key, meta["wall_s"])
    return Entry(key, old, meta, built=True)


def entries(cache: Path) -> list[dict[str, Any]]:
    """Every entry's meta (with its size in bytes), oldest first."""
    found = []
    for path in sorted(cache.iterdir()) if cache.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {"key": path.name, "damaged": True}
        meta["bytes"] = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        found.append(meta)
    return sorted(found, key=lambda m: str(m.get("created", "")))


def remove(cache: Path, key: str) -> bool:
    """Removes one entry (and its lock file); only a direct child of the cache dir named like a key."""
    if not key or "/" in key or key.startswith(".") or key in ("..",):
        raise ValueError(f"{key!r} is not an embedding cache key")
    path = cache / key
    if path.resolve().parent != cache.resolve() or not path.is_dir():
        return False
    trash = cache / f".tmp-{uuid.uuid4().hex}"
    os.rename(path, trash)
    shutil.rmtree(trash)
    (cache / f"{key}.lock").unlink(missing_ok=True)
    return True
