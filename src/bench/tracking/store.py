"""The tracking store, checked before a sweep creates anything, and the embedded one made safely.

check_store(settings)     in planning (and a single run's preflight), without torch: a named
                          tracking URI must answer, and the embedded SQLite store must not be a
                          half-migrated one that holds runs (a sentence says how to repair it)
prepare_embedded(db)      when the sweep starts: the file is created and MLflow's schema
                          migrated under a file lock, once. MLflow migrates a new SQLite store on
                          first use, and two sweeps started at once raced that migration
                          ("duplicate column name: step", "table _alembic_tmp_metrics already
                          exists"), leaving a store every later sweep failed on. A half-migrated
                          store that holds no run is set aside and made again.
store_locations(settings) the URI and artifact root a config names, else the embedded store's
                          (made 0600/0700 here), for the driver and for a single run alike
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from omegaconf import DictConfig

from hydra_plugins.bench_sweeper.api import SQLITE_LIMIT, SweepError, mask_text, multi_node_reason, reach

log = logging.getLogger(__name__)


class TrackingStoreError(SweepError, RuntimeError):
    """The tracking store cannot be used: unreachable, or half-migrated with runs in it."""


def check_store(uri: str | None, embedded_db: Path) -> None:
    """Refuse what would fail once the sweep has started (a sentence, before anything exists)."""
    if uri:
        _check_reachable(uri)
    else:
        _check_not_half_migrated(embedded_db)


@functools.cache
def _check_reachable(uri: str) -> None:
    parts = urlsplit(uri)
    # Without its credentials: to show it, and to ask it (urllib takes no user:password@ in a URL).
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else uri
    shown = bare if parts.password else uri
    if parts.scheme in ("http", "https"):
        try:  # any answer, a 401 included, is a server; no answer is not
            urllib.request.urlopen(f"{bare.rstrip('/')}/health", timeout=10).close()
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingStoreError(
                f"mlflow.tracking_uri={shown} cannot be reached ({reason}): start that MLflow server or fix the "
                "address, leave mlflow.tracking_uri unset for the embedded store, or set mlflow.enabled=false"
            ) from None
    elif parts.scheme == "sqlite":
        _check_not_half_migrated(Path(uri.split(":///", 1)[-1]))
    elif parts.scheme in ("", "file"):
        return
    else:  # a database server (postgresql://...): reached with MLflow's own driver, briefly
        problem = reach(uri)
        if problem is not None:
            raise TrackingStoreError(
                f"mlflow.tracking_uri={mask_text(uri)} {problem}. Check the URL, the credentials and that the "
                "database server is up, leave mlflow.tracking_uri unset for the embedded store, or set "
                "mlflow.enabled=false"
            )


def warn_sqlite_multi_node(uri: str | None, config: DictConfig) -> None:
    """The embedded (or a named) SQLite store for trials on several machines: said, with the limit."""
    if uri and not uri.startswith("sqlite:"):
        return
    reason = multi_node_reason(config)
    if reason is not None:
        log.warning(
            "MLflow's store is SQLite (%s), but %s: %s. Set mlflow.tracking_uri=postgresql://... "
            "(it is served to the trials like SQLite) or the URL of a shared MLflow server",
            uri or "multirun_outputs/mlflow.db",
            reason,
            SQLITE_LIMIT,
        )


def _tables(db: Path) -> set[str]:
    if not db.is_file() or db.stat().st_size == 0:
        return set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _runs_in(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _half_migrated(db: Path) -> str | None:
    """Why the store is half-migrated, or None. MLflow's migrations copy a table through
    _alembic_tmp_<name> and record their step in alembic_version; an interrupted one leaves either."""
    try:
        tables = _tables(db)
    except sqlite3.DatabaseError as exc:
        return f"it is not a readable SQLite database ({exc})"
    if not tables:
        return None
    leftover = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if leftover:
        return f"an interrupted schema migration left the table {leftover[0]}"
    if "alembic_version" not in tables:
        return "it has MLflow tables but no alembic_version"
    return None


def _check_not_half_migrated(db: Path) -> None:
    reason = _half_migrated(db)
    if reason is None:
        return
    try:
        runs = _runs_in(db)
    except sqlite3.DatabaseError:
        runs = 0
    if runs:
        raise TrackingStoreError(
            f"the MLflow store {db} is half-migrated ({reason}) and holds {runs} runs. Back it up, then drop the "
            "_alembic_tmp_* tables (sqlite3 <it> 'DROP TABLE _alembic_tmp_<name>') and run "
            f"`mlflow db upgrade sqlite:///{db}`; or point mlflow.tracking_uri elsewhere"
        )


def prepare_embedded(db: Path) -> None:
    """Create and migrate the embedded store once, under a lock; a half-migrated one without runs
    is moved aside (kept) and made again. The file is its owner's only (0600)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the next sweep waits until this one has migrated it
        reason = _half_migrated(db)
        if reason is not None:
            _check_not_half_migrated(db)  # with runs in it: refused, with how to repair it
            aside = db.with_name(f"{db.name}.half-migrated-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(db, aside)
            log.warning(
                "the MLflow store %s was half-migrated (%s) and held no run: kept as %s, made again",
                db,
                reason,
                aside.name,
            )
        db.touch(mode=0o600)  # an empty file is an empty SQLite database
        db.chmod(0o600)
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)  # creates and migrates its schema


# ---- where a config says runs go: shared by the sweep's driver and its jobs -----------------------
def settings_of(config: DictConfig) -> DictConfig | None:
    """The config's `mlflow` node, or None where tracking is off (or the app has none)."""
    node = config.get("mlflow")
    return node if node is not None and node.get("enabled", True) else None


def embedded_root() -> Path:
    return Path(os.getcwd()) / "multirun_outputs"


def default_locations() -> tuple[str, str]:
    """The embedded store: multirun_outputs/mlflow.db and multirun_outputs/mlartifacts."""
    root = embedded_root()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


def store_locations(settings: DictConfig) -> tuple[str, str]:
    """The tracking URI and artifact root this config names, else the embedded store's. The embedded
    store holds every run's config and results, so, like the served store's API (basic auth), only
    its owner may read it: bench makes its file 0600 and its artifact root 0700 (SQLite gives its
    journals the file's mode). Locations a user named keep the permissions they have."""
    uri, artifacts = settings.get("tracking_uri"), settings.get("artifact_location")
    root = embedded_root()
    if not artifacts:
        (root / "mlartifacts").mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / "mlartifacts").chmod(0o700)
    if not uri:
        prepare_embedded(root / "mlflow.db")  # created and migrated once, under a lock; 0600
    default_uri, default_artifacts = default_locations()
    return uri or default_uri, artifacts or default_artifacts
