"""Helpers the test modules share: driving the stub app and bench, reading what a sweep leaves."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STUB = Path(__file__).parent / "stub_app" / "stub_app.py"
SECRET = "hunter2-do-not-log"


def run_stub(
    sweep_dir: Path, *args: str, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The stub sweep to its end, in a process of its own (forked from a warm interpreter:
    tests/warm_cli.py)."""
    from tests.warm_cli import python_script

    return python_script(
        STUB,
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        *args,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})},
    )


def start_stub(
    sweep_dir: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The stub sweep in the background; its output goes to <sweep_dir>.log (read it with `output`)."""
    log = open(f"{sweep_dir}.log", "w")
    return subprocess.Popen(
        [sys.executable, str(STUB), "-m", f"hydra.sweep.dir={sweep_dir}", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})},
    )


def run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, as a person at a shell would; (exit code, what it showed)."""
    import pty
    import select

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        args,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "120", "HYDRA_FULL_ERROR": "1"},
    )
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
    return [
        "mlflow.enabled=true",
        f"mlflow.tracking_uri={uri or f'sqlite:///{tmp_path}/mlflow.db'}",
        f"+mlflow.artifact_location={(tmp_path / 'artifacts').as_uri()}",
    ]


def run_tracked_stub(
    tmp_path: Path, *args: str, uri: str | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
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


def assert_tracked_like_the_local_launcher(
    client: Any, experiment: str, sweep_dir: Path, cells: int, trials: int, repeats: int = 0
) -> None:
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
    "creds.HFToken": "S3cret-camel-case-5555",  # key styles: CamelCase, and a name of several words
    "cloud.aws_access_key_id": "S3cret-snake-case-6666",
    "opaque": "S3cret-env-no-separators-7777",  # ${oc.env:...} of a variable named MYSECRET-style
}
PLANTED_ENV = {"BENCH_TEST_HF_TOKEN": PLANTED["hf"], "BENCHTESTSECRET": PLANTED["opaque"]}


def planted_overrides() -> list[str]:
    return [
        f"+secrets.db_password={PLANTED['secrets.db_password']}",
        f"+db.url=postgresql://user:{PLANTED['db.url']}@db.example/x",
        f"+setup=['export HF_TOKEN={PLANTED['setup']}']",
        "+hf=${oc.env:BENCH_TEST_HF_TOKEN}",
        f"+creds.HFToken={PLANTED['creds.HFToken']}",
        f"+cloud.aws_access_key_id={PLANTED['cloud.aws_access_key_id']}",
        "+opaque=${oc.env:BENCHTESTSECRET}",
        # A failing trial whose traceback carries two of them.
        "leak_in_error='${secrets.db_password} ${hf}'",
        "received=[secrets.db_password,db.url,setup,hf,creds.HFToken,cloud.aws_access_key_id,opaque]",
    ]


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

    expected = {
        "secrets.db_password": PLANTED["secrets.db_password"],
        "db.url": f"postgresql://user:{PLANTED['db.url']}@db.example/x",
        "setup": str([f"export HF_TOKEN={PLANTED['setup']}"]),
        "hf": PLANTED["hf"],
        "creds.HFToken": PLANTED["creds.HFToken"],
        "cloud.aws_access_key_id": PLANTED["cloud.aws_access_key_id"],
        "opaque": PLANTED["opaque"],
    }
    digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in expected.items()}
    files = list(sweep_dir.glob("*/received.json"))
    return bool(files) and all(json.loads(f.read_text()) == digests for f in files)


# ---- report: compute costs -------------------------------------------------------------------
RESULTS_HEADER = [
    "cell",
    "task",
    "model",
    "decoder",
    "metric",
    "direction",
    "study",
    "study_version",
    "trial",
    "state",
    "value",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "started_at",
    "finished_at",
    "job_num",
    "job_dir",
    "mlflow_run_id",
    "interrupted",
    "error",
    "hparams.lr",
]
REPEATS_HEADER = [
    "cell",
    "task",
    "model",
    "decoder",
    "metric",
    "direction",
    "seed",
    "state",
    "val_value",
    "test_value",
    "checkpoint",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "mlflow_run_id",
    "job_dir",
    "error",
    "finished_at",
    "hparams.lr",
    "interrupted",
    "n_trials",
    "started_at",
    "study",
    "study_version",
    "test/mIoU",
    "trial",
    "tuning_best_trial",
]
# (model, task): tuning trials as (state, GPU-hours), then repeats as (seed, state, GPU-hours, test mIoU).
# CPU-hours are 8 x the GPU-hours (8 cores per GPU); "" is a figure not recorded (WAITING, RUNNING).
COST_CELLS = {
    ("large", "cropland"): (
        [("COMPLETE", 0.5), ("PRUNED", 0.25), ("FAIL", 1.0), ("WAITING", "")],
        [(1, "COMPLETE", 0.75, 0.72), (2, "COMPLETE", 0.75, 0.74)],
    ),
    ("large", "burns"): (
        [("COMPLETE", 0.5), ("RUNNING", "")],
        [(1, "COMPLETE", 0.75, 0.61), (2, "COMPLETE", 0.75, 0.63)],
    ),
    ("small", "cropland"): (
        [("COMPLETE", 0.125), ("COMPLETE", 0.125)],
        [(1, "COMPLETE", 0.25, 0.55), (2, "COMPLETE", 0.25, 0.57)],
    ),
    ("small", "burns"): (
        [("COMPLETE", 0.0625)],
        [(1, "COMPLETE", 0.25, 0.41), (2, "COMPLETE", 0.25, 0.43), (3, "FAIL", 0.1, "")],
    ),
}
# A sweep written before bench accounted costs: its CSVs have no gpu_hours / cpu_hours columns.
UNACCOUNTED_CELLS = {
    ("baseline", "cropland"): (
        [("COMPLETE", ""), ("COMPLETE", "")],
        [(1, "COMPLETE", "", 0.50), (2, "COMPLETE", "", 0.52)],
    )
}


def _write_rows(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in header} for row in rows)


def write_cost_sweep(sweep: Path, cells: dict = COST_CELLS, accounted: bool = True) -> Path:
    """A tuned and repeated sweep dir's results.csv and repeats.csv, in the layout the sweeper writes
    (tests/helpers RESULTS_HEADER / REPEATS_HEADER, as bench_sweeper/_results.py orders them)."""
    sweep.mkdir(parents=True)
    tuning, repeats = [], []
    for (model, task), (trials, seeds) in cells.items():
        cell = {
            "cell": f"task={task},model={model}",
            "task": task,
            "model": model,
            "decoder": "UNetDecoder",
            "metric": "val/mIoU",
            "direction": "maximize",
            "study_version": 1,
        }
        study = f"bench[task={task},model={model}]@0123456789ab"
        for n, (state, hours) in enumerate(trials):
            ran = state != "WAITING"
            tuning.append(
                {
                    **cell,
                    "study": study,
                    "trial": n,
                    "state": state,
                    "hparams.lr": 1e-4 * (n + 1),
                    "value": 0.3 + 0.1 * n if state in ("COMPLETE", "PRUNED") else "",
                    "duration_s": 60.0 * (n + 1) if ran and state != "RUNNING" else "",
                    "gpu_hours": hours,
                    "cpu_hours": 8 * hours if hours != "" else "",
                    "job_num": n if ran else "",
                    "job_dir": f"{sweep}/{n}" if ran else "",
                    "interrupted": False,
                    "error": "CUDA error" if state == "FAIL" else "",
                }
            )
        for n, (seed, state, hours, score) in enumerate(seeds):
            repeats.append(
                {
                    **cell,
                    "study": f"{study}/repeats",
                    "trial": n,
                    "seed": seed,
                    "state": state,
                    "val_value": score,
                    "test_value": score,
                    "test/mIoU": score,
                    "duration_s": 90.0,
                    "gpu_hours": hours,
                    "cpu_hours": 8 * hours if hours != "" else "",
                    "n_trials": len(trials),
                    "tuning_best_trial": 0,
                    "interrupted": False,
                    "hparams.lr": 1e-4,
                }
            )
    drop = [] if accounted else ["gpu_hours", "cpu_hours"]
    _write_rows(sweep / "results.csv", [c for c in RESULTS_HEADER if c not in drop], tuning)
    _write_rows(sweep / "repeats.csv", [c for c in REPEATS_HEADER if c not in drop], repeats)
    return sweep


def assert_each_embedding_built_once(sweep: Path, cache: Path) -> None:
    """A probe sweep of 4 concurrent-capable trials sharing one embedding cache: all COMPLETE, one entry
    per split (train, val) on disk, each built by one trial (the 2 concurrent first trials may split the
    two between them) and written once (a builder its launcher killed and re-ran released its lock with
    its process and wrote nothing); every trial that built nothing logged a hit per split; nothing
    half-written is left."""
    from bench.probes.cache import entries

    rows = read_csv(sweep / "results.csv")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    built = sorted(int(r["embeddings_built"]) for r in rows)
    on_disk = entries(cache)
    assert sorted(m["split"] for m in on_disk) == ["train", "val"]  # one entry per split, in the shared dir
    assert sum(built) == len(on_disk) == 2 and built[:2] == [0, 0]
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]  # nothing half-written left
    logs = {r["trial"]: (Path(r["job_dir"]) / "bench.log").read_text() for r in rows}
    assert sum(text.count("embedding cache entry") for text in logs.values()) == 2, logs
    for row in rows:
        if row["embeddings_built"] == "0":
            assert logs[row["trial"]].count("embedding cache hit") == 2, logs[row["trial"]]
