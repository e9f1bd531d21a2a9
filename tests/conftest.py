"""Shared fixtures: configs composed with Hydra's compose API, as in lightning-hydra-template."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

# One thread per torch process: `make test` runs two xdist workers on this 2-core machine, next to
# Ray and SLURM jobs that inherit this environment. Oversubscribed, the suite took 9 min 18 s here;
# with one thread each, 6 min 16 s (these small models gain little from a second thread anyway).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import bench  # noqa: E402,F401  (registers resolvers)
from bench.paths import CONFIG_DIR, REPO_ROOT  # noqa: E402
from tests.clusters import postgres_db, postgres_server, ray_cluster, slurm_cluster  # noqa: F401  (session fixtures)


def pytest_collection_modifyitems(items: list) -> None:
    """The longest test files first (their `duration` mark: rough seconds on this 2-core machine),
    so that `make test`'s workers, which take one file at a time, are not left waiting on one long
    file at the end (xdist's own order, most tests first, started the 140 s protocol test last)."""

    def cost(item) -> float:
        mark = item.get_closest_marker("duration")
        return mark.args[0] if mark else 0.0

    items.sort(key=cost, reverse=True)  # stable: files and tests keep their order otherwise


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Synthetic datasets are generated here once per test session, not in the user's cache."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def compose_cfg(tmp_path, data_dir):
    """compose_cfg('task=x', ...) -> the DictConfig `python -m bench task=x ...` would run."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(
                "config",
                overrides=[f"output_dir={tmp_path / 'job'}", f"data_dir={data_dir}", *overrides],
            )

    return _compose


@pytest.fixture
def run_cli(tmp_path, data_dir):
    """Run `python -m bench ...` in a process of its own; returns CompletedProcess (text). The process
    is forked from a warm interpreter (tests/warm_cli.py) unless the command's environment sets a
    variable a module may read as it is imported; then it is a fresh `python -m bench`."""
    from tests.warm_cli import python_m

    def _run(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "BENCH_DATA_DIR": str(data_dir), "HYDRA_FULL_ERROR": "", **(env or {})}
        return python_m("bench", *args, cwd=tmp_path, env=full_env, timeout=timeout)

    return _run


__all__ = ["group_options", "REPO_ROOT"]
