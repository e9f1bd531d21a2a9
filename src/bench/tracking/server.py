"""A local `mlflow server` over the benchmark's SQLite file, for the duration of a sweep.

Trials log over HTTP to one server process instead of opening the SQLite file themselves: one
writer, no "database is locked", and jobs on other nodes can reach it when it binds a routable
host. Artifacts are not proxied: clients write them straight to the experiment's directory.

The server runs under a small watchdog (`python -m bench.tracking.server ...`) that holds the read
end of a pipe from the driver: if the driver dies, even by SIGKILL, the pipe closes and the
watchdog stops the server, so no orphan keeps the SQLite file and a port.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalTrackingServer:
    def __init__(self, backend_uri: str, artifact_root: str, log_path: str | os.PathLike, host: str = "127.0.0.1") -> None:
        self.backend_uri, self.artifact_root, self.host = backend_uri, artifact_root, host
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> str:
        port = free_port(self.host if self.host != "0.0.0.0" else "127.0.0.1")
        self.url = f"http://{socket.getfqdn() if self.host == '0.0.0.0' else self.host}:{port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "bench.tracking.server", sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", self.backend_uri, "--host", self.host, "--port", str(port), "--workers", "1",
               "--no-serve-artifacts", "--default-artifact-root", self.artifact_root]
        # MLflow's job runner (huey consumers, for GenAI evaluation jobs) is of no use to bench and
        # starts extra Python processes that slow the server's start by 2-4 s on 2 cores.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
        with open(self.log_path, "ab") as out:
            # Own session: a Ctrl-C aimed at the driver must not stop the server before the driver
            # has closed its runs. stdin is the driver-death pipe (see the module docstring).
            self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        log.info("MLflow server for %s at %s", self.backend_uri, self.url)
                        return self.url
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.stdin.close()  # the watchdog stops the server and exits
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _watchdog(command: list[str]) -> int:
    """Run `command` in its own process group until stdin reaches EOF, then stop it."""
    child = subprocess.Popen(command, start_new_session=True)
    try:
        sys.stdin.buffer.read()  # returns when the driver closes the pipe or dies
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
    return child.wait()


if __name__ == "__main__":
    sys.exit(_watchdog(sys.argv[1:]))
