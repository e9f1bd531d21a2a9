"""Database URLs checked before a sweep creates anything: generic (Optuna's storage, or any store
an app names), never importing a driver until a server URL is actually named.

reach(url)                  None where the server accepts the URL's credentials, else why not, as
                            one clause with any password masked ('cannot be reached: ...' or
                            'refused the credentials of user bench: ...'); a short connect timeout
multi_node_reason(config)   why the launcher this config names may run trials on several machines
                            (a SLURM launcher; Ray with the address of a remote cluster), else None
SQLITE_LIMIT                the measured limit of a served SQLite store (benchmarks/tracking_load.py,
                            docs/scale.md), for the warning given when SQLite is named for such a run
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ._masking import mask_text, remember

CONNECT_TIMEOUT_S = 5
# benchmarks/tracking_load.py on a 2-core machine (docs/scale.md, "Measured limits").
SQLITE_LIMIT = (
    "one served store took about 50 log calls/s (500 metric points/s) in benchmarks/tracking_load.py "
    "on 2 cores, and SQLite is one file on one machine: PostgreSQL is the store for several nodes (docs/scale.md)"
)
_CREDENTIAL_WORDS = ("password authentication failed", "authentication failed", "no password supplied", "access denied")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "")


DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


def is_database_url(url: str) -> bool:
    """A SQLAlchemy URL of a database server (postgresql://, postgresql+psycopg2://, mysql://...)."""
    return "://" in url and url.split("://", 1)[0].split("+", 1)[0].lower() in DATABASE_SCHEMES


def reach(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Connect once, with a short timeout, and disconnect. None: reachable, credentials accepted."""
    parts = urlsplit(url)
    if parts.password:
        remember(parts.password)  # masked in whatever this process writes from now on
    import sqlalchemy

    connect_args: dict[str, Any] = {}
    if parts.scheme.startswith("postgres"):
        connect_args["connect_timeout"] = max(1, int(timeout_s))
    elif parts.scheme.startswith("mysql"):
        connect_args["connect_timeout"] = max(1, int(timeout_s))
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    except Exception as exc:  # no driver installed, a malformed URL
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot be used: {mask_text(first)}"
    try:
        with engine.connect():
            return None
    except Exception as exc:
        text = " ".join(line.strip() for line in str(getattr(exc, "orig", exc) or exc).splitlines() if line.strip())
        text = mask_text(text)[:300]
        if any(word in text.lower() for word in _CREDENTIAL_WORDS):
            return f"refused the credentials of user {parts.username or '(none)'}: {text}"
        return f"cannot be reached: {text}"
    finally:
        engine.dispose()


def multi_node_reason(config: Any) -> str | None:
    """Why the config's Hydra launcher may run trials on machines other than the driver's."""
    from omegaconf import OmegaConf

    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if "slurm" in target.lower():
        return "the SLURM launcher runs trials on whichever nodes the cluster gives them"
    if "ray" in target.lower():
        address = OmegaConf.select(config, "hydra.launcher.ray.init.address", default=None)
        if address and str(address) not in ("auto", "local"):
            host = str(address).removeprefix("ray://").rsplit(":", 1)[0]
            if host not in _LOOPBACK:
                return f"the Ray launcher joins the cluster at {address}, whose nodes run the trials"
    return None
