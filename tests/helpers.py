"""Helpers the test modules share: driving the stub app and bench, reading what a sweep leaves."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

STUB = Path(__file__).parent / "stub_app" / "stub_app.py"
SECRET = "hunter2-do-not-log"


def run_stub(sweep_dir: Path, *args: str, timeout: float = 300, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})})


def start_stub(sweep_dir: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The stub sweep in the background; its output goes to <sweep_dir>.log (read it with `output`)."""
    log = open(f"{sweep_dir}.log", "w")
    return subprocess.Popen([sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *args], stdout=log,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})})


def run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, as a person at a shell would; (exit code, what it showed)."""
    import pty
    import select

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary,
                            env={**os.environ, "COLUMNS": "120", "HYDRA_FULL_ERROR": "1"})
    os.close(secondary)
    shown, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        if select.select([primary], [], [], 0.5)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed: the command exited
                break
            shown += data
        elif proc.poll() is not None:
            break
    os.close(primary)
    return proc.wait(timeout=max(1.0, deadline - time.time())), shown.decode(errors="replace")


def output(sweep_dir: Path) -> str:
    return Path(f"{sweep_dir}.log").read_text()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def studies(sweep_dir: Path, storage: str | None = None, current_only: bool = True) -> dict[str, Any]:
    """The sweep's studies by cell label (the current version of each cell unless current_only=False,
    then by study name)."""
    import optuna

    from hydra_plugins.bench_sweeper._studies import open_storage, sweep_studies

    store = open_storage(storage or str(sweep_dir / "optuna.journal"))
    sweep_id = json.loads((sweep_dir / "sweep.json").read_text())["sweep_id"]
    records = sweep_studies(store, sweep_id).values()
    if not current_only:
        return {r.name: optuna.load_study(study_name=r.name, storage=store) for r in records}
    return {r.attrs["cell"]: optuna.load_study(study_name=r.name, storage=store) for r in records if r.current}


def states(study: Any) -> list[str]:
    return [t.state.name for t in study.trials]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll observable state until `predicate` returns something truthy."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie lingers until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def running_trial_dir(sweep_dir: Path) -> Path | None:
    """A stub trial that has started (attempts.jsonl) and not finished (no timing.json)."""
    for attempts in sweep_dir.glob("*/attempts.jsonl"):
        if not (attempts.parent / "timing.json").exists():
            return attempts.parent
    return None


# ---- MLflow ----------------------------------------------------------------------------------
def tracking_args(tmp_path: Path, uri: str | None = None) -> list[str]:
    """Turn on bench's MLflow callback in the stub app: by default the embedded SQLite store."""
    return ["mlflow.enabled=true", f"mlflow.tracking_uri={uri or f'sqlite:///{tmp_path}/mlflow.db'}",
            f"+mlflow.artifact_location={(tmp_path / 'artifacts').as_uri()}"]


def run_tracked_stub(tmp_path: Path, *args: str, uri: str | None = None, timeout: float = 300,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_stub(tmp_path / "sweep", *tracking_args(tmp_path, uri), *args, timeout=timeout, cwd=tmp_path, env=env)


def tree(client: Any, experiment: str = "stub") -> dict[str, list]:
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    by_level: dict[str, list] = {}
    for run in found:
        by_level.setdefault(run.data.tags.get("bench.level"), []).append(run)
    return by_level


def read_results(tmp_path: Path) -> list[dict[str, str]]:
    return read_csv(tmp_path / "sweep" / "results.csv")


def assert_tracked_like_the_local_launcher(client: Any, experiment: str, sweep_dir: Path, cells: int, trials: int,
                                           repeats: int = 0) -> None:
    """One benchmark run, a run per cell, a FINISHED run per trial (and per repeat, with its test
    value in repeats.csv), and results.csv / repeats.csv pointing at them."""
    levels = tree(client, experiment)
    expected = {"benchmark": 1, "cell": cells, "trial": trials, **({"repeat": repeats} if repeats else {})}
    assert {k: len(v) for k, v in levels.items()} == expected
    assert all(r.info.status == "FINISHED" for level in levels.values() for r in level)
    assert {r["mlflow_run_id"] for r in read_csv(sweep_dir / "results.csv")} == {r.info.run_id for r in levels["trial"]}
    if repeats:
        rows = read_csv(sweep_dir / "repeats.csv")
        assert {r["mlflow_run_id"] for r in rows} == {r.info.run_id for r in levels["repeat"]}
        assert all(r["state"] == "COMPLETE" and 0 <= float(r["test_value"]) <= 1 for r in rows)
        for run in levels["repeat"]:  # the test split was evaluated in the job, wherever it ran
            assert client.get_metric_history(run.info.run_id, "test/Accuracy")


# ---- secrets ----------------------------------------------------------------------------------
# One distinct secret per position a secret can hide in; the tests plant them all and then look for
# them in every byte a sweep left: its directory, the MLflow store, the console.
PLANTED = {
    "secrets.db_password": "S3cret-named-key-1111",  # under a key that names a secret
    "db.url": "S3cret-url-password-2222",  # the password of a URL
    "setup": "S3cret-in-a-list-3333",  # NAME=VALUE text inside a list
    "hf": "S3cret-from-env-4444",  # ${oc.env:...} of a variable named like a token
}
PLANTED_ENV = {"BENCH_TEST_HF_TOKEN": PLANTED["hf"]}


def planted_overrides() -> list[str]:
    return [f"+secrets.db_password={PLANTED['secrets.db_password']}",
            f"+db.url=postgresql://user:{PLANTED['db.url']}@db.example/x",
            f"+setup=['export HF_TOKEN={PLANTED['setup']}']",
            "+hf=${oc.env:BENCH_TEST_HF_TOKEN}",
            # A failing trial whose traceback carries two of them.
            "leak_in_error='${secrets.db_password} ${hf}'",
            "received=[secrets.db_password,db.url,setup,hf]"]


def find_secrets(secrets: list[str], roots: list[Path], texts: dict[str, str]) -> list[str]:
    """Where any of `secrets` appears: every file under `roots` (bytes, databases included) and the
    given texts (the captured console)."""
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{secret!r} in {path}" for secret in secrets if secret.encode() in data]
    for name, text in texts.items():
        found += [f"{secret!r} in {name}" for secret in secrets if secret in text]
    return found


def received_real_values(sweep_dir: Path) -> bool:
    """Every trial that ran got the real planted values (it recorded their digests)."""
    import hashlib

    expected = {"secrets.db_password": PLANTED["secrets.db_password"],
                "db.url": f"postgresql://user:{PLANTED['db.url']}@db.example/x",
                "setup": str([f"export HF_TOKEN={PLANTED['setup']}"]), "hf": PLANTED["hf"]}
    digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in expected.items()}
    files = list(sweep_dir.glob("*/received.json"))
    return bool(files) and all(json.loads(f.read_text()) == digests for f in files)
