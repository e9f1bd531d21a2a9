"""Real clusters for the launcher tests: a 2-node Ray cluster and a single-node SLURM.

Each fixture starts its cluster when it can and otherwise skips with the reason, except that
BENCH_REQUIRE_CLUSTERS=1 (set by .ci/run) turns such a skip into a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.paths import REPO_ROOT
from bench.tracking.server import free_port

RAY = str(Path(sys.executable).parent / "ray")


def skip_or_fail(reason: str) -> None:
    if os.environ.get("BENCH_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"BENCH_REQUIRE_CLUSTERS=1 but: {reason}")
    pytest.skip(reason)


def _ray(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})})


def _alive_nodes(address: str) -> int:
    probe = subprocess.run(
        [sys.executable, "-c", "import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
         "print(sum(n['Alive'] for n in ray.nodes()))", address],
        capture_output=True, text=True, timeout=120,
    )
    return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else 0


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """`ray start --head` plus a second `ray start --address=...`: two nodes on this machine.

    The cluster uses token authentication, as a shared cluster should: the token is generated into
    this session's tmp dir (not ~/.ray, so a fresh machine and a used one behave the same) and
    RAY_AUTH_MODE/RAY_AUTH_TOKEN_PATH reach every process that joins or connects, bench's driver
    included, the way a user exports them.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000", "--disable-usage-stats"]
    token_path = tmp_path_factory.mktemp("ray") / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    previous = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    try:
        head = _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
        if head.returncode != 0:
            skip_or_fail(f"ray start --head failed: {head.stderr[-500:]}")
        second = _ray("start", f"--address={address}", *common)
        if second.returncode != 0:
            skip_or_fail(f"ray start --address failed: {second.stderr[-500:]}")
        deadline = time.time() + 60
        while _alive_nodes(address) < 2:
            if time.time() > deadline:
                skip_or_fail("the 2-node Ray cluster did not come up within 60 s")
            time.sleep(1)
        yield address
    finally:
        _ray("stop", "--force")
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def slurm_cluster():
    """scripts/slurm-up.sh: a single-node SLURM with accounting (submitit needs sacct). Exit code 2
    means it cannot run here (no root, no apt) and may skip; any other failure is a broken helper
    or cluster, and fails."""
    up = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=600)
    if up.returncode == 2:
        skip_or_fail(f"no SLURM here: {(up.stderr or up.stdout).strip().splitlines()[-1:]}")
    elif up.returncode != 0:
        pytest.fail(f"scripts/slurm-up.sh failed (exit {up.returncode}):\n{up.stderr[-3000:]}")
    match = re.search(r"export SLURM_CONF=(\S+)", up.stdout)
    assert match, up.stdout
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = match.group(1)
    try:
        yield match.group(1)
    finally:
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "slurm-down.sh")], capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
