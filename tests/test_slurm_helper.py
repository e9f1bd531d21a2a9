"""scripts/slurm-up.sh and slurm-down.sh run as root: they must only ever trust, use and delete a
state directory they made themselves, and leave nothing machine-wide behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from bench.paths import REPO_ROOT
from tests.clusters import skip_or_fail
from tests.helpers import alive, wait_for

pytestmark = pytest.mark.cluster
SCRIPTS = REPO_ROOT / "scripts"


@pytest.fixture(autouse=True)
def as_root():
    if os.geteuid() != 0:
        skip_or_fail("the SLURM helper runs as root")


def helper(name: str, *args: str, state_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BENCH_SLURM_DIR": str(state_dir), **env},
    )


def test_a_symlinked_state_dir_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "state").symlink_to(target)
    result = helper("slurm-up.sh", state_dir=tmp_path / "state")
    assert result.returncode == 1
    assert f"{tmp_path / 'state'} is a symlink; refusing to use it" in result.stderr
    assert not any(target.iterdir())


@pytest.mark.parametrize(
    "owner, mode, expected",
    [
        (65534, 0o700, "belongs to uid 65534, not root"),
        (0, 0o755, "has mode 755; others must not read or write it"),
        (0, 0o700, "was not made by this helper"),
    ],
)
def test_a_state_dir_someone_else_could_have_made_is_refused(tmp_path, owner, mode, expected):
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep.txt").write_text("a user's file")
    (state / "pids").mkdir()  # what the old helper took as proof that a dir was its own
    os.chown(state, owner, owner)
    state.chmod(mode)
    for script, args in (("slurm-up.sh", ()), ("slurm-down.sh", ("--purge",))):
        result = helper(script, *args, state_dir=state)
        assert result.returncode == 1, result.stderr
        assert expected in result.stderr
    assert (state / "keep.txt").read_text() == "a user's file"
    assert sorted(p.name for p in state.iterdir()) == ["keep.txt", "pids"]  # no lock, no config written


def test_not_root_means_cannot_run_here(tmp_path):
    """As another user (nobody). A checkout in a private folder (root's home, `mktemp -d`: 0700) is
    not readable to it, so the helper runs from a readable copy."""
    import shutil
    import tempfile

    # $TMPDIR may be private too (root's own): a temp folder every user can reach, and "/" as the cwd.
    bases = (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm")
    reachable = [b for b in map(Path, bases) if all(os.stat(d).st_mode & 0o001 for d in [b, *b.resolve().parents])]
    assert reachable, f"none of {bases} can be entered by other users"
    with tempfile.TemporaryDirectory(dir=reachable[0]) as readable:
        os.chmod(readable, 0o755)
        scripts = Path(shutil.copytree(SCRIPTS, Path(readable) / "scripts"))
        for path in [scripts, *scripts.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(scripts / "slurm-up.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={**os.environ, "BENCH_SLURM_DIR": str(tmp_path / "state")},
        )
    assert result.returncode == 2  # the one failure tests may skip on
    assert "cannot run here: must run as root" in result.stderr


def test_a_temporary_machine_wide_file_goes_even_when_the_helper_is_killed(tmp_path):
    """The mechanism behind the temporary /usr/sbin/policy-rc.d (remove_on_exit in lib.sh), on a
    file of the test's own: the helper is killed with SIGKILL, and the file still goes."""
    marker = tmp_path / "policy-rc.d"
    script = (
        f"source {SCRIPTS / 'slurm' / 'lib.sh'}; remove_on_exit {marker}; touch {marker}; echo ready; exec sleep 300"
    )
    shell = subprocess.Popen(
        ["bash", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_SLURM_DIR": str(tmp_path / "state")},
    )
    assert shell.stdout.readline().strip() == "ready" and marker.exists()
    os.kill(shell.pid, signal.SIGKILL)
    shell.wait()
    wait_for(lambda: not marker.exists(), 10, "the guard to remove the file")


def test_up_makes_a_private_marked_dir_and_purge_deletes_only_that(tmp_path):
    """A second, short-lived cluster beside the tests' own: other ports, another state dir."""
    state = Path(f"/tmp/bench-slurm-test-{os.getpid()}")
    try:
        up = helper("slurm-up.sh", state_dir=state, BENCH_SLURM_PORT_BASE="7917")
        if up.returncode == 2:
            skip_or_fail(f"no SLURM here: {up.stderr.strip().splitlines()[-1:]}")
        assert up.returncode == 0, up.stderr[-3000:]
        assert up.stdout.strip() == f"export SLURM_CONF={state}/slurm.conf"
        assert state.stat().st_uid == 0 and state.stat().st_mode & 0o777 == 0o711
        assert (state / ".bench-slurm-state").is_file() and (state / "munge").stat().st_mode & 0o777 == 0o700
        assert not list(state.rglob("dbpass")) and "StoragePass" not in (state / "slurmdbd.conf").read_text()
        pids = {p.stem: int(p.read_text()) for p in (state / "pids").glob("*.pid")}
        assert set(pids) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
    finally:
        down = helper("slurm-down.sh", "--purge", state_dir=state)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    wait_for(lambda: not [pid for pid in pids.values() if alive(pid)], 30, "the daemons to be gone")
