"""Load on the served MLflow store: many concurrent trials logging metrics, SQLite against PostgreSQL.

    python benchmarks/tracking_load.py [--trials 200] [--duration 60] [--metrics 10]
                                       [--backends sqlite,postgres] [--procs 4]

Starts bench's own served store (bench.tracking.server.LocalTrackingServer: `mlflow server` with
basic auth, one worker, on loopback) over each backend in turn: a SQLite file in a temporary
directory, then PostgreSQL (scripts/postgres-up.sh: the test server, installed with apt when missing;
a fresh database per run). Then `--trials` simulated trials, each with its own run, log `--metrics`
metrics every second for `--duration` seconds through bench's own job side (a TrialLogger per
trial: the trial flushes an epoch's points and goes on; its sender thread sends them, with any
points of earlier epochs still unsent, as one log_batch), then close their runs. The trials are
threads spread over `--procs` client processes.

Reports, per backend:
  lost points   points the trials logged that the store does not hold (counted in the database
                itself afterwards: failed calls, points still unsent when the time is up, anything
                dropped); the goal is 0
  unclosed      trials whose run was still being closed when the time was up (their points may all
                be stored: the closing requests queue behind them)
  p50/p99       latency of one log_batch request, as the sender sees it
  points/call   how many points a request carried: 10 when the store keeps up, more when it does not
  delay p99     from a point's logging to the store holding it
  server CPU    CPU-seconds of the server's processes (the watchdog, `mlflow server` and its
                workers; and for PostgreSQL, the postmaster and its backends) from /proc/<pid>/stat,
                over the load, as cores busy
Loopback only, bounded in time: each backend's run ends by --duration + --drain seconds. Its
temporary directories are removed; the PostgreSQL test server is left up (scripts/postgres-down.sh).
On a shared 2-core machine the clients compete with the server for the same cores: the figures are
a floor for what a dedicated server does (docs/scale.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- server CPU from /proc --------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself and its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based in stat(5)
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK_TCK


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of `roots` and all their descendants, now."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            parents[int(entry)], cpu[int(entry)] = found
    keep = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in keep and pid not in keep:
                keep.add(pid)
                changed = True
    return sum(cpu.get(pid, 0.0) for pid in keep)


# ---- the backends -----------------------------------------------------------------------------
def postgres_url() -> tuple[str, int]:
    """A fresh database on the test server, and the server's postmaster PID."""
    import secrets

    import psycopg

    up = subprocess.run(["bash", str(REPO / "scripts" / "postgres-up.sh")], capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"scripts/postgres-up.sh failed (exit {up.returncode}): {up.stderr.strip()[-500:]}")
    url_file = Path(up.stdout.strip().rpartition("=")[2])
    base = url_file.read_text().strip()
    pid = int((url_file.parent / "pids" / "postgres.pid").read_text())
    name = f"load_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return base.rpartition("/")[0] + f"/{name}", pid


_COUNT = "SELECT COUNT(*) FROM metrics WHERE key LIKE 'val/metric_%'"  # not the trials' objectives


def count_points(backend_uri: str) -> int:
    if backend_uri.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(backend_uri.removeprefix("sqlite:///")) as con:
            return con.execute(_COUNT).fetchone()[0]
    import psycopg

    with psycopg.connect(backend_uri) as con:
        row = con.execute(_COUNT).fetchone()
        return int(row[0]) if row else 0


# ---- the simulated trials ---------------------------------------------------------------------
def client_process(
    uri: str, run_ids: list[str], metrics: int, duration: float, start: Any, go: Any, drain: float, out: mp.Queue
) -> None:
    from optuna.trial import TrialState

    from bench.tracking.trial_logger import TrialLogger
    from hydra_plugins.bench_sweeper.api import Outcome

    out.put("ready")  # imports done: the schedule starts only once every client process is here
    go.wait()
    start_at = start.value
    latencies: list[float] = []
    delays: list[float] = []
    sizes: list[int] = []
    lock = threading.Lock()
    names = [f"val/metric_{i}" for i in range(metrics)]

    def trial(index: int, run_id: str) -> None:
        """bench's own job side: a TrialLogger whose sender thread sends what the trial flushes."""
        logger = TrialLogger(uri, run_id)
        real = logger.client.log_batch
        my_lat: list[float] = []
        my_delay: list[float] = []
        my_sizes: list[int] = []

        def timed(run: str, metrics: Any = (), **kwargs: Any) -> None:
            t0 = time.perf_counter()
            real(run, metrics=metrics, **kwargs)
            done = time.time()
            my_lat.append(time.perf_counter() - t0)
            if metrics:  # from the point's own timestamp (when the trial logged it) to stored
                my_sizes.append(len(metrics))
                my_delay.extend(done - m.timestamp / 1000 for m in metrics)

        logger.client.log_batch = timed  # type: ignore[method-assign]
        offset = (index % 100) / 100  # spread the trials over each second, as real epochs are
        for step in range(int(duration)):
            due = start_at + step + offset
            if (wait := due - time.time()) > 0:
                time.sleep(wait)  # the schedule itself: a trial logs once a second
            logger.log_metrics({name: float(step) for name in names}, step)
            logger.flush()  # the end of an epoch: the trial goes on at once, the sender sends
        logger.close(Outcome(TrialState.COMPLETE, value=0.0))  # the rest, then the run ends
        with lock:
            latencies.extend(my_lat)
            delays.extend(my_delay)
            sizes.extend(my_sizes)

    end_by = start_at + duration + drain
    threads = [threading.Thread(target=trial, args=(i, r), daemon=True) for i, r in enumerate(run_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:  # a trial still closing by then has lost what it has not sent
        thread.join(timeout=max(0.0, end_by - time.time()))
    with lock:
        out.put((list(latencies), list(delays), list(sizes), sum(t.is_alive() for t in threads)))


def run_backend(name: str, args: argparse.Namespace) -> dict:
    from mlflow import MlflowClient

    from bench.tracking.server import LocalTrackingServer

    tmp = tempfile.mkdtemp(prefix=f"tracking-load-{name}-")
    db_pid: int | None = None
    if name == "sqlite":
        backend = f"sqlite:///{tmp}/mlflow.db"
        from bench.tracking.store import prepare_embedded

        prepare_embedded(Path(tmp) / "mlflow.db")
    else:
        backend, db_pid = postgres_url()
    server = LocalTrackingServer(backend, Path(tmp, "artifacts").as_uri(), Path(tmp) / "server.log")
    uri = server.start()
    try:
        client = MlflowClient(uri)
        experiment = client.create_experiment("load")
        run_ids = [client.create_run(experiment).info.run_id for _ in range(args.trials)]
        roots = [server.process.pid] + ([db_pid] if db_pid else [])  # type: ignore[union-attr]
        ctx = mp.get_context("spawn")  # not fork: the parent holds MLflow client threads and locks
        out: mp.Queue = ctx.Queue()
        start, go = ctx.Value("d", 0.0), ctx.Event()
        chunks = [run_ids[i :: args.procs] for i in range(args.procs)]
        procs = [
            ctx.Process(
                target=client_process,
                args=(uri, chunk, args.metrics, args.duration, start, go, args.drain, out),
                daemon=True,
            )
            for chunk in chunks
            if chunk
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            assert out.get(timeout=300) == "ready"
        start_at = start.value = time.time() + 1.0
        go.set()
        while time.time() < start_at:
            time.sleep(0.05)
        cpu0, t0 = tree_cpu(roots), time.time()
        results = [out.get(timeout=args.duration + args.drain + 60) for _ in procs]
        cpu1, t1 = tree_cpu(roots), time.time()
        for proc in procs:
            proc.join(timeout=10)
        latencies = sorted(x for r in results for x in r[0])
        delays = sorted(x for r in results for x in r[1])
        sizes = [x for r in results for x in r[2]]
        expected = args.trials * int(args.duration) * args.metrics
        stored = count_points(backend)
        return {
            "backend": name,
            "expected": expected,
            "stored": stored,
            "lost": expected - stored,
            "unfinished": sum(r[3] for r in results),
            "calls": len(latencies),
            "points_per_call": statistics.mean(sizes) if sizes else float("nan"),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "delay_p50_s": statistics.median(delays) if delays else float("nan"),
            "delay_p99_s": delays[int(0.99 * (len(delays) - 1))] if delays else float("nan"),
            "points_per_s": stored / max(t1 - t0, 1e-9),
            "server_cores": (cpu1 - cpu0) / max(t1 - t0, 1e-9),
            "wall_s": t1 - t0,
        }
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds each trial logs for")
    parser.add_argument("--metrics", type=int, default=10, help="metrics per trial per second")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--procs", type=int, default=4, help="client processes the trials are spread over")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds after --duration to finish sending")
    args = parser.parse_args()
    rows = [run_backend(name, args) for name in args.backends.split(",")]
    print(
        f"\n{args.trials} trials x {args.metrics} metrics/s x {args.duration:.0f} s through bench's TrialLogger, "
        f"{os.cpu_count()} cores (clients and server on the same machine)"
    )
    header = (
        f"{'backend':9} {'lost':>7} {'expected':>9} {'unclosed':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'points/call':>11} {'delay p99 s':>11} {'points/s':>9} {'server cores':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['backend']:9} {r['lost']:>7} {r['expected']:>9} {r['unfinished']:>8} {r['p50_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['points_per_call']:>11.1f} {r['delay_p99_s']:>11.2f} "
            f"{r['points_per_s']:>9.0f} {r['server_cores']:>12.2f}"
        )


if __name__ == "__main__":
    main()
