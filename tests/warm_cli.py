"""`python -m bench ...` (and `python -m bench.report ...`, any module) from a warm interpreter: a server process that has imported what a training
run imports (torch, Lightning, TerraTorch, MLflow, Hydra, bench and its sweeper: 10-40 s of CPU on
this machine, every time) forks a child per command. The child is a process of its own (its own pid,
process group, cwd, environment, stdout and stderr, signal handlers) that runs bench/__main__.py as
`python -m bench` does (runpy, as __main__, with sys.argv and sys.path[0] set the same way) and
exits with the CLI's own exit code, after the interpreter's exit work (non-daemon threads joined,
atexit handlers run, streams flushed).

What the child cannot get from a warm interpreter is a fresh import, so the run_cli fixture keeps a
real `python -m bench` for: a command whose environment differs from the server's in a variable
that a module may read when it is imported (only the variables of RUNTIME_ENV may differ: those
bench's configs read with ${oc.env:...} when they are composed), and any test that asks for a fresh
interpreter (the fast-CLI guarantees in test_cli.py run their own subprocess). No torch operation
runs in the server (torch's thread pools would not survive the fork), and OMP_NUM_THREADS is set
before torch is imported (tests/conftest.py)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Read by bench's configs when they are composed (conf/**: ${oc.env:...}) or by bench when it runs,
# never by a module as it is imported: a command may set these differently from the server.
RUNTIME_ENV = {
    "BENCH_DATA_DIR",
    "HYDRA_FULL_ERROR",
    "GEO_BENCH_DIR",
    "GEO_BENCH_V2_DIR",
    "HLS_BURN_SCARS_DIR",
    "SEN1FLOODS11_DIR",
    "CROP_CLASSIFICATION_DIR",
    "PYTEST_CURRENT_TEST",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
}


def _preload() -> None:
    """What `python -m bench` imports on its way to a trained model, without running any of it. A
    root handler while Lightning is imported: in a real run Hydra has configured logging before
    bench.train imports Lightning, which then adds no handler of its own and propagates to the job's
    log file; without one, Lightning would keep its records to itself."""
    import logging

    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        import hydra  # noqa: F401
        import lightning.pytorch  # noqa: F401
        import mlflow  # noqa: F401
        import optuna  # noqa: F401
        import terratorch  # noqa: F401
        import terratorch.datamodules  # noqa: F401
        import terratorch.tasks  # noqa: F401
        import torch  # noqa: F401

        import bench  # noqa: F401
        import bench.convert.cli  # noqa: F401
        import bench.errors  # noqa: F401
        import bench.lightning_callbacks  # noqa: F401
        import bench.report.build  # noqa: F401
        import bench.train  # noqa: F401
        import hydra_plugins.bench_sweeper.api  # noqa: F401
    finally:
        root.removeHandler(placeholder)


def _child(request: dict) -> None:
    """In the forked child: become `python -m bench <argv>` and exit as it would."""
    import atexit
    import runpy
    import threading
    import traceback

    os.setpgid(0, 0)  # the client can stop the command and all it started
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    script = request.get("script")
    if script:  # `python <script>`: the script's own folder first on sys.path
        sys.argv = [script, *request["argv"]]
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:  # `python -m <module>`: runpy puts the module's path first, and the working directory goes first
        sys.argv = ["-m", *request["argv"]]
        sys.path[0] = request["cwd"]
    code: int = 0
    try:
        if script:
            runpy.run_path(script, run_name="__main__")
        else:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # Python's own exit on an unhandled one: killed by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:  # the interpreter's own exit: non-daemon threads, atexit handlers, buffered output
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def serve(path: str) -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: gone with the test process that started it
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            _serve_one(listener, conn)
        except OSError:  # a client that went away; the next one is served
            pass


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    with conn, conn.makefile("rw") as stream:
        line = stream.readline()
        if not line:
            return
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            _child(request)
        try:
            stream.write(f"{pid}\n")
            stream.flush()
        finally:
            _, status = os.waitpid(pid, 0)
        try:
            stream.write(f"{os.waitstatus_to_exitcode(status)}\n")
            stream.flush()
        except OSError:  # the client gave up on it (a timeout): it has killed the command
            pass


class WarmCli:
    """The client: one server per test process, started on first use."""

    def __init__(self, env: dict[str, str], repo_root: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-warm-cli-")
        self._socket = os.path.join(self._dir, "socket")
        self.env = dict(env)
        self._server = subprocess.Popen(
            [sys.executable, "-m", "tests.warm_cli", self._socket],
            cwd=repo_root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._server.stdout.readline().strip() if self._server.stdout else ""
        if ready != "ready":
            self._server.kill()
            raise RuntimeError(f"the warm bench server did not start (exit {self._server.wait()})")
        self._count = 0

    def takes(self, env: dict[str, str]) -> bool:
        """The command's environment differs from the server's only where a forked child may differ."""
        changed = {k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)}
        return changed <= RUNTIME_ENV

    def run(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float, script: str = ""
    ) -> subprocess.CompletedProcess:
        """`python -m module args`, or `python script args` when a script is given."""
        self._count += 1
        out = os.path.join(self._dir, f"{self._count}.out")
        err = os.path.join(self._dir, f"{self._count}.err")
        request = {
            "module": module,
            "script": script,
            "argv": list(args),
            "cwd": str(cwd),
            "env": env,
            "stdout": out,
            "stderr": err,
        }
        command = ["python", script] if script else ["python", "-m", module]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self._socket)
            conn.settimeout(timeout)
            with conn.makefile("rw") as stream:
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                pid = int(stream.readline())
                try:
                    code = int(stream.readline())
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired([*command, *args], timeout) from None
        try:
            stdout, stderr = Path(out).read_text(errors="replace"), Path(err).read_text(errors="replace")
        finally:
            for path in (out, err):
                os.unlink(path)
        return subprocess.CompletedProcess([*command, *args], code, stdout, stderr)

    def close(self) -> None:
        self._server.kill()
        self._server.wait()
        if self._server.stdout:
            self._server.stdout.close()
        for name in os.listdir(self._dir):
            os.unlink(os.path.join(self._dir, name))
        os.rmdir(self._dir)


_shared: WarmCli | None = None


def python_m(
    module: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` with its output captured as text, as subprocess.run would give it:
    forked from this test process's warm server where the environment allows (see the module's
    docstring), else a fresh interpreter. env: the whole environment (default: this process's)."""
    return _run(["-m", module], args, cwd, env, timeout)


def python_script(
    script: str | Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python <script> <args>`, as python_m runs a module."""
    return _run([str(script)], args, cwd, env, timeout)


def _run(
    command: list[str], args: tuple[str, ...], cwd: Path | None, env: dict[str, str] | None, timeout: float
) -> subprocess.CompletedProcess:
    global _shared
    env = dict(os.environ if env is None else env)
    cwd = Path.cwd() if cwd is None else Path(cwd)
    if os.environ.get("BENCH_TEST_WARM_CLI", "1") == "1":
        if _shared is None:
            from bench.paths import REPO_ROOT

            _shared = WarmCli(dict(os.environ), REPO_ROOT)
            atexit.register(_shared.close)
        if _shared.takes(env):
            module, script = (command[1], "") if command[0] == "-m" else ("", command[0])
            return _shared.run(module, list(args), cwd=cwd, env=env, timeout=timeout, script=script)
    return subprocess.run(
        [sys.executable, *command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


if __name__ == "__main__":
    serve(sys.argv[1])
