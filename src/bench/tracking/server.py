"""A local `mlflow server` over the benchmark's SQLite file, for the duration of a sweep.

Trials log over HTTP to one server process instead of opening the SQLite file themselves: one
writer, no "database is locked", and jobs on other nodes can reach it when it binds a routable
host. Artifacts are not proxied: clients write them straight to the experiment's directory.

It runs MLflow's own basic-auth app with credentials made for this sweep: every request without
them is refused, so other users of the machine (or the network, with a routable host) can neither
read nor change runs. The password exists only in this process, in the server's environment and,
for jobs, in their config (masked wherever it is written); the auth store keeps only its hash, in
a private temporary directory.

The server runs under a small watchdog (`python -m bench.tracking.server ...`) that holds the read
end of a pipe from the driver: if the driver dies, even by SIGKILL, the pipe closes and the
watchdog stops the server. The server shares the watchdog's process group, so stopping that group
reaches every server process; and the watchdog exits as soon as the server does, so a server that
cannot start (a port taken) is reported at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from hydra_plugins.bench_sweeper.api import mask_text, remember

log = logging.getLogger(__name__)
USERNAME = "bench"
AUTH_DIR_ENV = "BENCH_MLFLOW_AUTH_DIR"  # the server's private auth store, for its watchdog to remove


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalTrackingServer:
    def __init__(
        self,
        backend_uri: str,
        artifact_root: str,
        log_path: str | os.PathLike,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.backend_uri, self.artifact_root, self.host, self.port = backend_uri, artifact_root, host, port
        database_password = urlsplit(backend_uri).password if "://" in backend_uri else None
        if database_password:
            remember(database_password)  # a postgresql://user:pw@... store's: masked like ours
        self.shown_backend = mask_text(backend_uri)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.url = ""  # without credentials: for /health, which MLflow leaves open
        self.password = secrets.token_urlsafe(24)
        remember(self.password)  # masked in every text this process writes from now on
        self._private: str | None = None
        self._stopping = False  # stop() was asked: its exit is no news

    @property
    def tracking_uri(self) -> str:
        """The URL clients use: MLflow's REST client sends its userinfo as basic auth."""
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{USERNAME}:{self.password}@{rest}"

    def start(self, timeout_s: float = 120.0) -> str:
        port = self.port or free_port(self.host if self.host != "0.0.0.0" else "127.0.0.1")
        self.url = f"http://{socket.getfqdn() if self.host == '0.0.0.0' else self.host}:{port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._private = tempfile.mkdtemp(prefix="bench-mlflow-auth-")  # 0700
        auth_config = Path(self._private) / "basic_auth.ini"
        auth_config.write_text(
            "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{self._private}/auth.db\nadmin_username = {USERNAME}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # One worker: caching a checked password cannot go stale, and saves a PBKDF2 per request.
            "auth_cache_ttl_seconds = 3600\n"
        )
        cmd = [
            sys.executable,
            "-m",
            "bench.tracking.server",
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            self.host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-serve-artifacts",
            "--default-artifact-root",
            self.artifact_root,
        ]
        env = {
            **os.environ,
            # MLflow's job runner (huey consumers, for GenAI evaluation jobs) is of no use to bench
            # and starts extra Python processes that slow the server's start by 2-4 s on 2 cores.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # MLflow's log_batch holds one pooled database connection while it takes a second one
            # for the metrics: with as many concurrent calls as the pool holds (SQLAlchemy's
            # default, 5 + 10 overflow), every call waits for a connection none will return, and
            # the server stalls until the pool's 30 s timeout (benchmarks/tracking_load.py: 50
            # concurrent trials stored 8 % of their points). The server runs at most 40 requests at
            # once (Starlette runs the WSGI app on anyio's 40 threads): 60 connections never run out.
            "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": os.environ.get("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "20"),
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": os.environ.get("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "40"),
            # In the environment, not on the command line: a database URL's password would show in `ps`.
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
            # The watchdog removes it once the server is gone, also when the driver died first.
            AUTH_DIR_ENV: self._private,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        with open(self.log_path, "ab") as out:
            # Own session: a Ctrl-C aimed at the driver must not stop the server before the driver
            # has closed its runs. stdin is the driver-death pipe (see the module docstring).
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._cleanup()
                raise RuntimeError(
                    f"the mlflow server for {self.shown_backend} stopped before answering on {self.url} "
                    f"(exit code {self.process.returncode}); its last log lines: {_tail(self.log_path)} "
                    f"(log: {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        log.info(
                            "MLflow server for %s at %s (basic auth, credentials made for this sweep)",
                            self.shown_backend,
                            self.url,
                        )
                        return self.tracking_uri
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout_s:.0f} s; see {self.log_path}")

    def watch(self) -> None:
        """Say at once, on the driver's console, when the server stops while the sweep still needs
        it (killed, out of memory): trials can no longer log, and the next one will not start."""
        process = self.process
        if process is None:
            raise RuntimeError("watch() before start(): there is no server to watch")

        def wait() -> None:
            process.wait()
            if not self._stopping:
                log.error("%s", self.stopped_sentence())

        threading.Thread(target=wait, name="mlflow-server-watch", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stopped_sentence(self) -> str:
        code = self.process.returncode if self.process is not None else None
        return (
            f"the MLflow server of this sweep ({self.url}) stopped (exit code {code}): trials "
            f"can no longer log to it, so no new trial starts. Its last log lines: {_tail(self.log_path)} "
            f"(log: {self.log_path}). Resume the sweep (same command and hydra.sweep.dir) once the cause is fixed"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        self._stopping = True
        try:
            if self.process is None or self.process.poll() is not None:
                return
            if self.process.stdin is not None:
                self.process.stdin.close()  # the watchdog stops the server and exits
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                # The server shares the watchdog's process group: this reaches all of it.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._private:
            shutil.rmtree(self._private, ignore_errors=True)  # bench's own temporary auth store
            self._private = None


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) or "(empty log)"


def _read_until_eof(fd: int) -> None:
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds a lock that
    # interpreter shutdown would wait for.
    while os.read(fd, 4096):
        pass


def _watchdog(command: list[str]) -> int:
    """Run `command` in this process group until stdin reaches EOF, then stop the whole group;
    return at once, with its status, if the command exits first."""
    child = subprocess.Popen(command)
    closed = threading.Event()

    def wait_for_eof() -> None:
        _read_until_eof(0)
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    while child.poll() is None and not closed.wait(0.2):
        pass
    if child.poll() is None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal below is for the server
        os.killpg(0, signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(0, signal.SIGKILL)  # this process too: nothing is left to do
    status = child.wait()
    # The auth store bench made for this server (the driver removes it too when it stops the server;
    # a driver killed by SIGKILL cannot).
    if os.environ.get(AUTH_DIR_ENV):
        shutil.rmtree(os.environ[AUTH_DIR_ENV], ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(_watchdog(sys.argv[1:]))
