"""Real clusters for the launcher tests: a 2-node Ray cluster and a single-node SLURM.

Each fixture starts its cluster when it can and otherwise skips with the reason, except that
BENCH_REQUIRE_CLUSTERS=1 (set by .ci/run) turns such a skip into a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
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


def _alive_nodes(address: str) -> int:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
            "print(sum(n['Alive'] for n in ray.nodes()))",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else 0


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """`ray start --head` plus a second `ray start --address=...`: two nodes on this machine.

    Each node runs as `ray start --block` in its own session, so the fixture holds its PID and stops
    it by that PID (SIGTERM makes `ray start --block` stop the processes it started), never with
    `ray stop`, which finds Ray processes by name, other people's included.

    The cluster uses token authentication, as a shared cluster should: the token is generated into
    this session's tmp dir (not ~/.ray, so a fresh machine and a used one behave the same) and
    RAY_AUTH_MODE/RAY_AUTH_TOKEN_PATH reach every process that joins or connects, bench's driver
    included, the way a user exports them.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
    root = tmp_path_factory.mktemp("ray")
    token_path = root / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    previous = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    nodes: list[subprocess.Popen] = []
    try:
        # The head node also has 2 units of a custom resource that tests use as stand-in GPUs.
        head = ["--head", f"--port={port}", "--include-dashboard=false", '--resources={"unit": 2}']
        for args in (head, [f"--address={address}"]):
            log = open(root / f"node{len(nodes)}.log", "w")
            nodes.append(
                subprocess.Popen(
                    [RAY, "start", *args, *common], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.time() + 90
        while _alive_nodes(address) < 2:  # polls the cluster's own state (each probe takes seconds)
            failed = [n for n in nodes if n.poll() is not None]
            if failed or time.time() > deadline:
                logs = "\n".join((root / f"node{i}.log").read_text()[-500:] for i in range(len(nodes)))
                skip_or_fail(f"the 2-node Ray cluster did not come up: {logs}")
        yield address
    finally:
        for node in reversed(nodes):
            node.terminate()
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)  # its own session: the group is this node's
                node.wait()
        _forget_cluster(port)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _forget_cluster(port: int) -> None:
    """`ray start --head` records the cluster in /tmp/ray/ray_current_cluster, and a later plain
    ray.init() (the Ray launcher's, on this machine) then tries to join that dead cluster. `ray stop`
    removes the file; stopping by PID does not, so the file is removed here, only if it names ours."""
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


@pytest.fixture(scope="session")
def slurm_cluster():
    """scripts/slurm-up.sh: a single-node SLURM with accounting (submitit needs sacct). Exit code 2
    means it cannot run here (no root, no apt) and may skip; any other failure is a broken helper
    or cluster, and fails."""
    up = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=600
    )
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


@pytest.fixture(scope="session")
def postgres_server():
    """scripts/postgres-up.sh: a real PostgreSQL on loopback (installed with apt when missing),
    stopped by PID with scripts/postgres-down.sh. Yields its URL; exit code 2 (no root, no apt)
    may skip, any other failure fails. The URL's password comes from the helper's 0600 file,
    never from its output."""
    up = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "postgres-up.sh")], capture_output=True, text=True, timeout=600
    )
    if up.returncode == 2:
        skip_or_fail(f"no PostgreSQL here: {(up.stderr or up.stdout).strip().splitlines()[-1:]}")
    elif up.returncode != 0:
        pytest.fail(f"scripts/postgres-up.sh failed (exit {up.returncode}):\n{up.stderr[-3000:]}")
    match = re.search(r"export BENCH_POSTGRES_URL_FILE=(\S+)", up.stdout)
    assert match, up.stdout
    try:
        yield Path(match.group(1)).read_text().strip()
    finally:
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "postgres-down.sh")], capture_output=True, timeout=120)


@pytest.fixture
def postgres_db(postgres_server):
    """A database of this test's own on the session's server: its URL (user bench, with password)."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True, connect_timeout=10) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rpartition("/")[0] + f"/{name}"
    with psycopg.connect(postgres_server, autocommit=True, connect_timeout=10) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
