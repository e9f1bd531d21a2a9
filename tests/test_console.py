"""The driver's live console (bench_sweeper/_console.py): each running trial's epoch out of its maximum,
its latest value and its elapsed time, redrawn while the trial runs, also in the driver's own thread
(the local launcher). In-process over Optuna studies in memory, and on a real pseudo-terminal (tmux)
while a sweep's trial runs: the stub app's, and bench's own training (slow).

`BENCH_UPDATE_DOCS=1 pytest tests/test_console.py -k bench_trial` also writes the terminal's screen,
as the test captured it, to docs/console.png."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from hydra_plugins.bench_sweeper._cells import Cell
from hydra_plugins.bench_sweeper._console import RUNNING_HEADERS, Console, box_table
from hydra_plugins.bench_sweeper._loop_state import CellRun
from hydra_plugins.bench_sweeper.api import PROGRESS_ATTR, report_progress
from tests.helpers import STUB, wait_for

pytestmark = pytest.mark.duration(60)

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE = {"lr": FloatDistribution(1e-5, 1e-2, log=True)}
# A running trial's row of the live view: its cell and number, epoch i/max, value, elapsed m:ss.
ROW = re.compile(
    r"│ (?P<cell>\S+) #(?P<number>\d+) +│ (?P<epoch>\d+)/(?P<max>\d+) +│ (?P<value>[-0-9.e]+) +│ (?P<elapsed>\d+:\d\d) +│"
)


def make_run(storage, label: str = "task=a", target: int = 4, directions: list[str] | None = None) -> CellRun:
    cell = Cell(0, [], label, {"task": label}, direction=directions or "maximize", distributions=SPACE)
    study = optuna.create_study(study_name=label, storage=storage, directions=directions or ["maximize"])
    return CellRun(cell, study, target=target)


def test_a_running_trial_shows_its_epoch_value_and_elapsed_time_and_the_eta_follows_its_progress():
    storage = optuna.storages.InMemoryStorage()
    run = make_run(storage, target=4)
    console = Console([run], slots=1, live=False, read_every_s=0.0)
    trial = run.study.ask(SPACE)
    run.in_flight = 1
    started = time.monotonic() - 65  # a minute in
    console.trial_started(run, trial.number, started)
    assert console.running_rows() == [["task=a #0", "-", "-", "1:05"]]  # nothing reported yet
    assert console.rows()[0][-1] == "?"  # no duration known: no ETA

    report_progress(trial, 2, 10, 0.4567)
    console._read_cells()
    assert console.running_rows() == [["task=a #0", "2/10", "0.4567", "1:05"]]
    # 2 of 10 epochs in 65 s: the trial takes about 325 s, 260 s left, then 3 more trials of 325 s.
    eta = console.rows()[0][-1]
    hours, minutes, seconds = (["0"] + eta.split(":"))[-3:]
    assert abs(int(hours) * 3600 + int(minutes) * 60 + int(seconds) - (260 + 3 * 325)) <= 2

    console.trial_ended(run, trial.number)
    assert console.running_rows() == []


def test_progress_is_a_user_attribute_any_study_takes_and_never_fails_a_trial():
    storage = optuna.storages.InMemoryStorage()
    run = make_run(storage, directions=["minimize", "minimize"])  # multi-objective: no trial.report()
    trial = run.study.ask(SPACE)
    report_progress(trial, 3, None, math.nan)
    assert run.study.trials[0].user_attrs[PROGRESS_ATTR] == {"epoch": 3, "max_epochs": None, "value": None}
    console = Console([run], slots=1, live=False, read_every_s=0.0)
    console.trial_started(run, trial.number, time.monotonic())
    console._read_cells()
    assert console.running_rows()[0][1:3] == ["3/?", "-"]
    report_progress(None, 1, 10, 0.5)  # outside a sweep: nothing to do

    class Broken:
        def set_user_attr(self, key, value):
            raise OSError("the storage is gone")

    report_progress(Broken(), 1, 10, 0.5)  # logged, not raised


def test_the_view_is_drawn_as_a_box_table():
    assert box_table(RUNNING_HEADERS, [["task=a #0", "2/10", "0.4567", "1:05"]]).splitlines() == [
        "┏━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓",
        "┃ running trial ┃ epoch ┃ value  ┃ elapsed ┃",
        "┡━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩",
        "│ task=a #0     │ 2/10  │ 0.4567 │ 1:05    │",
        "└───────────────┴───────┴────────┴─────────┘",
    ]


# -- on a terminal ---------------------------------------------------------------------------------
class Terminal:
    """A tmux session of its own (its own server socket) running one command on a 160 x 50 screen."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def screen(self, ansi: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if ansi else []), "-t", "main")

    def running_row(self, cell_prefix: str = "") -> re.Match | None:
        rows = [m for m in ROW.finditer(self.screen()) if m["cell"].startswith(cell_prefix)]
        return rows[-1] if rows else None


@contextmanager
def terminal(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    term = Terminal(f"bench-test-{uuid.uuid4().hex[:8]}")
    # The server starts with this environment: the command inherits it.
    subprocess.run(
        ["tmux", "-L", term.socket, "-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", "160", "-y", "50"],
        cwd=cwd,
        env={**env, "TERM": "xterm-256color"},
        check=True,
        timeout=30,
    )
    try:
        term.tmux("set-option", "-t", "main", "remain-on-exit", "on")
        term.tmux("respawn-pane", "-k", "-t", "main", "-c", str(cwd), " ".join(map(_quote, command)))
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True, timeout=30)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def assert_the_view_ticks_while_the_trial_runs(term: Terminal, cell: str, timeout_s: float) -> tuple[re.Match, str]:
    """The running trial's row shows an epoch out of its maximum and a value, and its elapsed time
    changes while the trial still runs (its epoch not done yet). Returns the first row and its screen."""
    first = wait_for(lambda: term.running_row(cell), timeout_s, f"a running trial's row of {cell} with its epoch")
    screen = term.screen(ansi=True)
    assert 1 <= int(first["epoch"]) <= int(first["max"])
    float(first["value"])
    later = wait_for(
        lambda: (
            (m := term.running_row(cell)) and m["number"] == first["number"] and m["elapsed"] != first["elapsed"] and m
        ),
        30,
        "the running trial's elapsed time to tick",
    )
    assert later["cell"] == first["cell"]
    return first, screen


def test_a_terminal_redraws_the_view_while_a_local_trial_runs_in_the_driver(tmp_path):
    """The stub app on the local launcher: the trial runs in the driver's own thread, 40 steps of
    0.25 s, each reported with report_progress as any Hydra app may."""
    command = [
        sys.executable,
        str(STUB),
        "-m",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "task=a",
        "hydra.sweeper.n_trials=1",
        "steps=40",
        "step_sleep=0.25",
    ]
    with terminal(command, tmp_path, dict(os.environ)) as term:
        first, _ = assert_the_view_ticks_while_the_trial_runs(term, "default", 120)  # the stub's one cell
        assert first["max"] == "40"
        # The epoch moves on as the trial reports.
        wait_for(
            lambda: (m := term.running_row("default")) and int(m["epoch"]) > int(first["epoch"]), 30, "a later epoch"
        )
        final = wait_for(lambda: "Best per cell" in (s := term.screen()) and s, 120, "the sweep's end")
    assert "running trial" not in final.split("Best per cell")[-1]


@pytest.mark.slow
def test_a_terminal_shows_a_bench_trial_training_epoch_by_epoch(tmp_path, data_dir):
    """bench's own training (the demo preset's cells, prithvi_tiny, MLflow off) on the local launcher:
    its TrialProgress callback reports every validation epoch. The screen, as captured, is the docs'
    screenshot (BENCH_UPDATE_DOCS=1 writes docs/console.png)."""
    command = [
        sys.executable,
        "-m",
        "bench",
        "-m",
        "experiment=demo",
        "mlflow.enabled=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {**os.environ, "BENCH_DATA_DIR": str(data_dir)}
    with terminal(command, tmp_path, env) as term:
        first, screen = assert_the_view_ticks_while_the_trial_runs(term, "task=synthetic_seg", 420)
        assert first["max"] == "6"  # the demo's task.max_epochs
        assert 0.0 <= float(first["value"]) <= 1.0  # val/mIoU
    png = tmp_path / "console.png"
    screenshot(f"$ {' '.join(['python', *command[1:-1]])}\n{screen}", png)
    assert png.stat().st_size > 10_000
    if os.environ.get("BENCH_UPDATE_DOCS") == "1":
        shutil.copy(png, REPO_ROOT / "docs" / "console.png")


# A dark terminal: the captured screen as HTML in a font that has the box characters (DejaVu Sans
# Mono, installed with Chromium's fonts), which Chromium renders; the PNG is cropped to the terminal.
PAGE = (
    '<!DOCTYPE html><html><head><meta charset="UTF-8"></head><body style="margin:0;background:#fff">'
    '<pre style="margin:0;padding:14px 18px;display:inline-block;border-radius:6px;'
    "font-family:'DejaVu Sans Mono',monospace;font-size:13px;line-height:1.17;"
    'color:{foreground};background:{background}">{code}</pre></body></html>'
)


def screenshot(ansi: str, png: Path) -> None:
    """The terminal's screen (tmux's capture, with its colours) as a PNG, rendered by headless Chromium."""
    from PIL import Image, ImageChops
    from rich.console import Console as RichConsole
    from rich.terminal_theme import MONOKAI
    from rich.text import Text

    from tests.browser import render

    lines = ansi.rstrip("\n").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    recorder = RichConsole(record=True, width=160, file=io.StringIO(), color_system="truecolor", force_terminal=True)
    recorder.print(Text.from_ansi("\n".join(lines)), no_wrap=True, crop=True)
    page = png.with_suffix(".html")
    page.write_text(recorder.export_html(theme=MONOKAI, inline_styles=True, code_format=PAGE))
    render(page, screenshot=png)
    image = Image.open(png).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).getbbox()
    if box:
        image.crop(box).save(png)


def test_a_log_gets_one_timestamped_line_per_event_and_no_live_view(tmp_path):
    from tests.helpers import run_stub

    piped = run_stub(tmp_path / "sweep", "task=a", "hydra.sweeper.n_trials=2", "steps=3")
    assert piped.returncode == 0, piped.stderr[-3000:]
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[HYDRA\] "
    for number in (0, 1):
        assert len(re.findall(stamp + rf"\[default\] trial {number} started \(job #\d+\): ", piped.stdout, re.M)) == 1
        assert len(re.findall(stamp + rf"\[default\] trial {number} completed ", piped.stdout, re.M)) == 1
    assert "running trial" not in piped.stdout + piped.stderr and "┃" not in piped.stdout + piped.stderr
