"""PostgreSQL as the scale-out store, against a real server (scripts/postgres-up.sh, installed with
apt when missing, stopped by PID): a sweep's Optuna studies land in it and resume from it; a served
MLflow keeps its runs in it; an unreachable server and refused credentials are each one sentence
before anything exists; the password is nowhere in clear (sweep dir, artifacts, MLflow params and
tags, the server's log, the console)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import find_secrets, read_csv, run_stub, run_tracked_stub, studies, tree

pytestmark = [pytest.mark.cluster, pytest.mark.duration(60)]


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password and len(password) > 12
    return password


def test_a_sweeps_studies_land_in_postgres_and_resume_from_it(postgres_db, tmp_path):
    sweep = tmp_path / "sweep"
    storage = f"hydra.sweeper.storage={postgres_db}"
    first = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=2", storage, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (sweep / "optuna.journal").exists()  # the studies are in the database, not beside it
    found = studies(sweep, storage=postgres_db)
    assert {cell: len(s.trials) for cell, s in found.items()} == {"default": 2}

    second = run_stub(sweep, "task=a", "hydra.sweeper.n_trials=3", storage, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout + second.stderr
    found = studies(sweep, storage=postgres_db)
    assert {cell: len(s.trials) for cell, s in found.items()} == {"default": 3}
    assert len(read_csv(sweep / "results.csv")) == 3

    consoles = {"first console": first.stdout + first.stderr, "second console": second.stdout + second.stderr}
    assert not find_secrets([_password(postgres_db)], [sweep], consoles)
    assert "postgresql://bench:***@" in "".join(consoles.values())  # shown, masked


def test_mlflow_served_over_postgres_keeps_a_trials_runs(postgres_db, tmp_path):
    from mlflow import MlflowClient

    result = run_tracked_stub(tmp_path, "hydra.sweeper.n_trials=2", "+mlflow.serve=true", uri=postgres_db)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert (sweep / "mlflow_server.log").exists()  # trials logged over HTTP to the served store
    client = MlflowClient(postgres_db)  # ... whose backend is the database
    levels = tree(client)
    assert {k: len(v) for k, v in levels.items()} == {"benchmark": 1, "cell": 1, "trial": 2}
    assert all(r.info.status == "FINISHED" for level in levels.values() for r in level)
    assert {r["mlflow_run_id"] for r in read_csv(sweep / "results.csv")} == {r.info.run_id for r in levels["trial"]}
    # mlflow.json names the store for `python -m bench.report`: its user, never its password
    parts = urlsplit(postgres_db)
    assert json.loads((sweep / "mlflow.json").read_text())["tracking_uri"] == (
        f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"
    )

    password = _password(postgres_db)
    recorded = [
        f"{key}={value}"
        for level in levels.values()
        for run in level
        for key, value in {**run.data.params, **run.data.tags}.items()
    ]
    assert not any(password in line for line in recorded)
    assert not find_secrets([password], [sweep, tmp_path / "artifacts"], {"console": result.stdout + result.stderr})


BAD = {
    "unreachable": ("postgresql://bench:{pw}@127.0.0.1:1/bench", "cannot be reached"),
    "refused credentials": ("postgresql://bench:{pw}-wrong@{hostport}/bench", "refused the credentials of user bench"),
}


@pytest.mark.parametrize("where", ["hydra.sweeper.storage", "mlflow.tracking_uri"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_server_that_cannot_be_used_is_one_sentence_before_anything_exists(postgres_server, tmp_path, where, case):
    parts = urlsplit(postgres_server)
    template, sentence = BAD[case]
    password = "Wrong-Pass-" + _password(postgres_server)[:8]
    url = template.format(pw=password, hostport=f"{parts.hostname}:{parts.port}")
    args = [f"{where}={url}"] + (["mlflow.enabled=true"] if where.startswith("mlflow") else [])
    result = run_stub(tmp_path / "sweep", "hydra.sweeper.n_trials=1", *args, cwd=tmp_path)
    assert result.returncode != 0
    masked = url.replace(urlsplit(url).password or "", "***")
    assert f"{where}={masked} {sentence}" in result.stderr, result.stderr[-2000:]
    assert password not in result.stdout + result.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "multirun_outputs").exists()


def test_sqlite_named_for_a_multi_node_launcher_is_warned_with_the_measured_limit(caplog):
    from omegaconf import OmegaConf

    from bench.tracking.store import warn_sqlite_multi_node
    from hydra_plugins.bench_sweeper.api import SQLITE_LIMIT, multi_node_reason

    slurm = OmegaConf.create(
        {"hydra": {"launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.x.SlurmLauncher"}}}
    )
    remote_ray = OmegaConf.create(
        {
            "hydra": {
                "launcher": {
                    "_target_": "hydra_plugins.hydra_ray_launcher.x.RayLauncher",
                    "ray": {"init": {"address": "10.0.0.5:6379"}},
                }
            }
        }
    )
    local_ray = OmegaConf.create(
        {
            "hydra": {
                "launcher": {
                    "_target_": "hydra_plugins.hydra_ray_launcher.x.RayLauncher",
                    "ray": {"init": {"address": None}},
                }
            }
        }
    )
    basic = OmegaConf.create(
        {"hydra": {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}}}
    )
    assert multi_node_reason(slurm) and multi_node_reason(remote_ray)
    assert multi_node_reason(local_ray) is None and multi_node_reason(basic) is None
    with caplog.at_level("WARNING"):
        warn_sqlite_multi_node(None, slurm)
        warn_sqlite_multi_node("postgresql://bench:x@db/bench", slurm)
        warn_sqlite_multi_node(None, basic)
    assert len(caplog.records) == 1 and SQLITE_LIMIT in caplog.records[0].getMessage()


def test_the_helper_stops_the_server_by_its_pid_and_the_data_dir_is_private(postgres_server):
    import os

    state = Path(os.environ.get("BENCH_POSTGRES_DIR", "/var/lib/bench-postgres"))
    assert (state / "data").stat().st_mode & 0o777 == 0o700
    assert (state / "url").stat().st_mode & 0o777 == 0o600
    pid = int((state / "pids" / "postgres.pid").read_text())
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/postgres")


def test_the_served_store_takes_50_concurrent_trials_without_stalling(postgres_db, tmp_path):
    """MLflow's log_batch holds a pooled connection while taking a second: with SQLAlchemy's default
    pool (5 + 10) 50 concurrent calls stalled the server until the pool's 30 s timeout; bench's
    server is given a pool larger than its request threads."""
    import threading
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from bench.tracking.server import LocalTrackingServer

    server = LocalTrackingServer(postgres_db, (tmp_path / "artifacts").as_uri(), tmp_path / "server.log")
    uri = server.start()
    try:
        client = MlflowClient(uri)
        experiment = client.create_experiment("load")
        runs = [client.create_run(experiment).info.run_id for _ in range(50)]
        done: list[str] = []

        def trial(run_id: str) -> None:
            for step in range(2):
                client.log_batch(run_id, metrics=[Metric(f"m{i}", 1.0, 0, step) for i in range(10)], synchronous=True)
            done.append(run_id)

        threads = [threading.Thread(target=trial, args=(run,), daemon=True) for run in runs]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, 25 - (time.monotonic() - started)))
        assert len(done) == 50, f"{len(done)}/50 trials logged within 25 s"
    finally:
        server.stop()
    import psycopg

    with psycopg.connect(postgres_db) as con:
        assert con.execute("SELECT COUNT(*) FROM metrics").fetchone() == (50 * 2 * 10,)
