"""The tracking store (bench.tracking.store): the embedded SQLite store is created and migrated
once, under a lock, however many sweeps start at once; a half-migrated one is made again when it
holds no run and refused with how to repair it when it does; a tracking server that does not
answer is refused while planning, before anything exists."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.helpers import STUB, run_stub

pytestmark = pytest.mark.duration(60)

TRACKED = ["mlflow.enabled=true", "hydra.sweeper.n_trials=1"]


def _start(cwd, name: str) -> subprocess.Popen:
    """A sweep in the background, its output in <name>.log (files: a full pipe would stall it)."""
    return subprocess.Popen(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={cwd / name}", *TRACKED],
        cwd=cwd,
        stdout=open(cwd / f"{name}.log", "w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )


def test_sweeps_started_at_once_on_an_empty_folder_all_track_into_one_store(tmp_path):
    """Before, all but one failed in MLflow's schema migration (each raced the others on the new
    file: 3 of 4 here), and the store was left half-migrated for every later sweep."""
    sweeps = [_start(tmp_path, f"s{i}") for i in range(3)]
    codes = [p.wait(timeout=300) for p in sweeps]
    assert codes == [0, 0, 0], [(tmp_path / f"s{i}.log").read_text()[-1500:] for i in range(3)]
    db = tmp_path / "multirun_outputs" / "mlflow.db"
    assert db.stat().st_mode & 0o777 == 0o600
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("stub").experiment_id], "tags.`bench.level` = 'benchmark'")
    assert len(runs) == 3
    later = run_stub(tmp_path / "s3", *TRACKED, cwd=tmp_path)
    assert later.returncode == 0, later.stderr[-2000:]


def _half_migrated(db, with_run: bool) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    if with_run:
        client = MlflowClient(f"sqlite:///{db}")
        client.create_run(client.create_experiment("earlier"))
    with sqlite3.connect(db) as con:  # what an interrupted batch migration leaves
        con.execute("CREATE TABLE _alembic_tmp_metrics (key VARCHAR(250))")


def test_a_half_migrated_store_without_runs_is_set_aside_and_made_again(tmp_path):
    db = tmp_path / "multirun_outputs" / "mlflow.db"
    _half_migrated(db, with_run=False)
    result = run_stub(tmp_path / "sweep", *TRACKED, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "was half-migrated (an interrupted schema migration left the table _alembic_tmp_metrics)"
        in result.stdout + result.stderr
    )
    assert list(db.parent.glob("mlflow.db.half-migrated-*"))  # kept, not deleted


def test_a_half_migrated_store_with_runs_is_refused_with_how_to_repair_it(tmp_path):
    db = tmp_path / "multirun_outputs" / "mlflow.db"
    _half_migrated(db, with_run=True)
    before = db.read_bytes()
    for dry in (True, False):
        result = run_stub(tmp_path / "sweep", *TRACKED, *(["hydra.sweeper.dry_run=true"] if dry else []), cwd=tmp_path)
        assert result.returncode != 0
        assert (
            "is half-migrated (an interrupted schema migration left the table _alembic_tmp_metrics) and holds 1 runs"
            in result.stderr
        )
        assert "mlflow db upgrade" in result.stderr
    assert not (tmp_path / "sweep").exists() and db.read_bytes() == before


def test_a_tracking_server_that_does_not_answer_is_refused_before_anything_exists(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for dry in (True, False):
        result = run_stub(
            tmp_path / "sweep",
            *TRACKED,
            f"mlflow.tracking_uri=http://127.0.0.1:{port}",
            *(["hydra.sweeper.dry_run=true"] if dry else []),
            cwd=tmp_path,
        )
        assert result.returncode != 0
        assert f"mlflow.tracking_uri=http://127.0.0.1:{port} cannot be reached" in result.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "multirun_outputs").exists()


def test_a_server_named_with_credentials_is_asked_without_them_and_never_shown_with_them(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_stub(
        tmp_path / "sweep",
        *TRACKED,
        f"mlflow.tracking_uri=http://bench:Hunter2-pass-x@127.0.0.1:{port}",
        "hydra.sweeper.dry_run=true",
        cwd=tmp_path,
    )
    assert result.returncode != 0 and f"mlflow.tracking_uri=http://127.0.0.1:{port} cannot be reached" in result.stderr
    assert "Hunter2-pass-x" not in result.stdout + result.stderr
