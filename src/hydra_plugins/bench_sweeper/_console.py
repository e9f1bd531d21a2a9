"""What a person watching the driver sees: one line per trial event, and a per-cell progress view.

On a terminal the view is live under the event lines: a table of the cells (done, running, best,
cost, elapsed, each cell's ETA) and one row per running trial (its epoch out of its maximum, its
latest validation value, its elapsed time). rich's Live redraws it from its own thread, so it
keeps ticking while a trial runs in the driver's own thread (the local launcher) or while the
loop waits on Ray or SLURM. A job tells where it is through the sweep's Optuna storage
(trial.report_progress: a user attribute of its trial), which every launcher's jobs reach already;
the drawing thread reads only the running trials' progress, at most once per `read_every_s` (2 s).

Otherwise (a log file, CI) each event is one plain log line with its timestamp, and the cells'
table is logged as plain text every `plain_every_s` seconds. Event lines go through the sweeper's
logger as well, so they also reach log files.

Threads: the loop (main thread) tells the console which trials run (trial_started/trial_ended,
under its lock) and reads the cells' trials (cost, best) between trials; the drawing thread reads
what they left under the lock, the cells' counters (plain ints) and the running trials' studies
(Optuna's storages are thread-safe).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cost import Cost, total
from ._objectives import front, study_is_multi
from ._outcome import last_line
from ._results import format_value

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial
    from rich.console import RenderableType
    from rich.table import Table

    from ._loop_state import CellRun

log = logging.getLogger(__name__)
HEADERS = ["cell", "done", "running", "pruned", "failed", "best", "GPU-h", "CPU-h", "elapsed", "ETA"]
RUNNING_HEADERS = ["running trial", "epoch", "value", "elapsed"]


@dataclass(frozen=True)
class Progress:
    """Where a running trial is, as its job last reported (trial.report_progress)."""

    epoch: int
    max_epochs: int | None
    value: float | None

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.epoch / self.max_epochs) if self.max_epochs else None


@dataclass(frozen=True)
class Running:
    run: CellRun
    number: int
    started: float  # monotonic


class Console:
    def __init__(
        self,
        runs: list[CellRun],
        slots: int,
        live: bool | None = None,
        plain_every_s: float = 30.0,
        read_every_s: float = 2.0,
        terminal: Any = None,
    ) -> None:
        self.runs, self.slots = runs, slots  # runs: the loop's own list, which repeats join
        self.live_view: Any = None
        self.live = sys.stderr.isatty() if live is None else live
        self.plain_every_s = plain_every_s
        self.read_every_s = read_every_s
        self.terminal = terminal  # the rich Console the live view draws on (None: one on stderr)
        self._last_plain = time.monotonic()
        self._lock = threading.RLock()
        self._running: dict[tuple[int, int], Running] = {}  # (id of its run, trial number) -> it
        self._read_at = -math.inf  # when the drawing thread last read the running trials' progress
        self._cells_read_at = -math.inf  # when the loop's thread last read the cells' trials
        # As last read, one per run: its cost so far and its best (text)
        self._costs_read: list[Cost] = []
        self._best_read: list[str] = []
        self._progress: dict[tuple[int, int], Progress] = {}
        self._view: RenderableType | None = None  # the last view drawn, shown again if a read fails

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Console:
        if self.live:
            from rich.console import Console as RichConsole
            from rich.live import Live

            # Live draws `self` (its __rich__) from its own thread, once a second.
            self.live_view = Live(
                self,
                console=self.terminal or RichConsole(stderr=True),
                refresh_per_second=1,  # the elapsed times tick in seconds
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._read_cells()
            self.live_view.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live_view is not None:  # its last rendering stays on the terminal
            self._read_cells()
            self.live_view.refresh()
            self.live_view.__exit__(*exc)
            self.live_view = None
        else:
            log.info("final\n%s", self.plain_table())

    # -- the trials running (told by the loop, in the main thread) ----------------------------
    def trial_started(self, run: CellRun, number: int, started: float) -> None:
        with self._lock:
            self._running[(id(run), number)] = Running(run, number, started)

    def trial_ended(self, run: CellRun, number: int) -> None:
        with self._lock:
            self._running.pop((id(run), number), None)
            self._progress.pop((id(run), number), None)

    def running(self) -> list[Running]:
        with self._lock:
            return sorted(self._running.values(), key=lambda r: r.started)

    # -- events ---------------------------------------------------------------------------------
    def event(self, run: CellRun, number: int, what: str, params: dict[str, Any] | None = None) -> None:
        text = f"[{run.label}] trial {number} {what}"
        if params:
            text += ": " + " ".join(f"{k}={format_value(v)}" for k, v in params.items())
        self._say(text)

    def finished(self, run: CellRun, frozen: FrozenTrial, error: str | None) -> None:
        state = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}.get(
            frozen.state.name, frozen.state.name
        )
        values = frozen.values or []  # one per objective
        detail = (" " + ", ".join(format_value(v) for v in values)) if values else ""
        if error:
            detail += f": {last_line(error)}"
        self._say(
            f"[{run.label}] trial {frozen.number} {state}{detail} ({run.done}/{run.target} done)",
            level=logging.WARNING if error else logging.INFO,
        )
        if self.live_view is not None:  # its cost and the cell's best change now
            self._read_cells()

    def stopped(self, run: CellRun, reason: str) -> None:
        self._say(f"[{run.label}] stopped, no new trials: {reason}", level=logging.ERROR)

    def say(self, text: str) -> None:
        self._say(text)

    def _say(self, text: str, level: int = logging.INFO) -> None:
        if self.live_view is not None:
            self.live_view.console.print(text, markup=False, highlight=False)
            log.debug(text)
        else:
            log.log(level, text)

    def refresh(self) -> None:
        if self.live_view is not None:
            self._read_cells(force=False)
            self.live_view.refresh()
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            log.info("progress\n%s", self.plain_table())

    # -- reading the storage (rate-limited) -----------------------------------------------------
    def _read_cells(self, force: bool = True) -> None:
        """Each run's cost and best, and its running trials' progress, from all its trials: in the
        loop's thread (between trials, after each one ends, while it waits on a launcher), at most
        once per read_every_s unless `force`."""
        with self._lock:
            if not force and time.monotonic() - self._cells_read_at < self.read_every_s:
                return
            runs = list(self.runs)
        trials = [run.study.get_trials(deepcopy=False) for run in runs]
        costs = [total(found) for found in trials]
        best = [_best_text(run, _best_of(run, found)) for run, found in zip(runs, trials)]
        with self._lock:
            self._costs_read, self._best_read, self._cells_read_at = costs, best, time.monotonic()
        self._keep_progress(list(zip(runs, trials)))

    def _read_progress(self) -> None:
        """The running trials' progress, in the drawing thread, at most once per read_every_s: only
        the studies that have a trial running are read (one file read of the storage each), so that
        a trial running in the driver's own thread shares the interpreter with as little as can be."""
        from optuna.trial import TrialState

        with self._lock:
            if time.monotonic() - self._read_at < self.read_every_s:
                return
            self._read_at = time.monotonic()
            studied = {id(r.run): r.run for r in self._running.values()}
        self._keep_progress(
            [(run, run.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) for run in studied.values()],
            every_run=False,
        )

    def _keep_progress(self, found: list[tuple[CellRun, list[FrozenTrial]]], every_run: bool = True) -> None:
        from optuna.trial import TrialState

        from .trial import PROGRESS_ATTR

        progress = {}
        for run, trials in found:
            for trial in trials:
                reported = trial.user_attrs.get(PROGRESS_ATTR) if trial.state == TrialState.RUNNING else None
                if isinstance(reported, dict) and "epoch" in reported:
                    progress[(id(run), trial.number)] = Progress(
                        int(reported["epoch"]), reported.get("max_epochs"), reported.get("value")
                    )
        with self._lock:
            if every_run:
                self._progress = {}
            self._progress.update(progress)
            self._progress = {k: v for k, v in self._progress.items() if k in self._running}

    def progress(self, run: CellRun, number: int) -> Progress | None:
        with self._lock:
            return self._progress.get((id(run), number))

    # -- the table ------------------------------------------------------------------------------
    def _costs(self) -> list[Cost]:
        """Each run's cost so far (earlier runs of the sweep included), as last read (a run that
        joined since, a cell's repeats, costs nothing yet)."""
        with self._lock:
            costs = list(self._costs_read)
        return costs + [Cost(0.0, 0.0)] * (len(self.runs) - len(costs))

    def rows(self, costs: list[Cost] | None = None) -> list[list[str]]:
        now = time.monotonic()
        if costs is None:
            self._read_cells()
            costs = self._costs()
        running = self.running()
        open_cells = max(1, sum(1 for r in self.runs if r.wants_trials or r.in_flight))
        every = [d for r in self.runs for d in r.durations]
        # Before any trial has finished: a trial's duration as the running ones' progress predicts it.
        predicted = [d for r in running if (d := self._predicted(r, now))]
        rows = []
        with self._lock:
            best_texts = list(self._best_read)
        best_texts += ["-"] * (len(self.runs) - len(best_texts))
        for run, cost, best in zip(self.runs, costs, best_texts):
            remaining = 0 if run.stopped or run.ended else max(0, run.target - run.done)
            mine = [r for r in running if r.run is run]
            eta = self._eta(run, mine, remaining, every or predicted, open_cells, now)
            status = " (stopped)" if run.stopped else " (ended)" if run.ended else ""
            rows.append(
                [
                    run.label + status,
                    f"{run.done}/{run.target}",
                    str(run.in_flight),
                    str(run.pruned),
                    str(run.failed),
                    best,
                    f"{cost.gpu_hours:.3g}",
                    f"{cost.cpu_hours:.3g}",
                    _clock(now - run.started) if run.started else "-",
                    _clock(eta) if remaining else "-",
                ]
            )
        return rows

    def _eta(
        self, run: CellRun, mine: list[Running], remaining: int, every: list[float], open_cells: int, now: float
    ) -> float:
        """How long until this cell has its trials: the work it has left (trials not started x a
        trial's duration, plus what its running trials have left) shared by the open cells over the
        slots. A trial's duration: the cell's mean, else the sweep's (`every`: its finished trials'
        durations, or before any has finished, the running trials' predicted ones), so an ETA shows
        from the first epoch of the first trial. A running trial's part: its predicted duration
        (elapsed / the fraction of its epochs done) less its elapsed time."""
        mine_predicted = [d for r in mine if (d := self._predicted(r, now))]
        mean = _mean(run.durations) or _mean(every) or _mean(mine_predicted)
        if not mean:
            return math.nan
        left = 0.0
        for r in mine:
            elapsed = now - r.started
            left += max(0.0, (self._predicted(r, now) or mean) - elapsed)
        queued = max(0, remaining - len(mine))
        return (queued * mean + left) * open_cells / self.slots

    def _predicted(self, running: Running, now: float) -> float | None:
        """A running trial's whole duration, from the fraction of its epochs done; None unknown."""
        progress = self.progress(running.run, running.number)
        fraction = progress.fraction if progress else None
        return (now - running.started) / fraction if fraction else None

    def running_rows(self) -> list[list[str]]:
        """One row per running trial: its cell and number, epoch i/max, latest value, elapsed."""
        now = time.monotonic()
        rows = []
        for r in self.running():
            progress = self.progress(r.run, r.number)
            epoch = "-"
            if progress is not None:
                epoch = f"{progress.epoch}/{progress.max_epochs if progress.max_epochs else '?'}"
            value = "-" if progress is None or progress.value is None else format_value(progress.value)
            rows.append([f"{r.run.label} #{r.number}", epoch, value, _clock(now - r.started)])
        return rows

    def plain_table(self) -> str:
        self._read_cells()
        costs = self._costs()
        return f"{_spent_text(costs)}\n" + table_text(HEADERS, self.rows(costs))

    def __rich__(self) -> RenderableType:
        """The live view, drawn by rich's refresh thread (and by refresh() in the loop's): the
        cells' table and, under it, the running trials'. Drawn as text (box_table) rather than as
        rich Tables, whose layout costs about 1 ms of the interpreter per row and frame: the view
        must not slow a trial running in the driver's own thread."""
        from rich.text import Text

        try:
            self._read_progress()
            costs = self._costs()
            lines = [f"bench sweep: {_spent_text(costs)}", box_table(HEADERS, self.rows(costs))]
            running = self.running_rows()
            if running:
                lines.append(box_table(RUNNING_HEADERS, running))
            self._view = Text("\n".join(lines), no_wrap=True, overflow="crop")
        except Exception:  # a storage read failed: the last view stays, the sweep goes on
            log.debug("could not draw the progress view", exc_info=True)
        return self._view if self._view is not None else Text("bench sweep")


def box_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table drawn in box characters, as rich's HEAVY_HEAD tables look, in a fraction of their time."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells: list[str], edge: str, middle: str, end: str) -> str:
        return edge + middle.join(f" {str(c):<{w}} " for c, w in zip(cells, widths)) + end

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right

    return "\n".join(
        [
            rule("┏", "━", "┳", "┓"),
            line(headers, "┃", "┃", "┃"),
            rule("┡", "━", "╇", "┩"),
            *(line(row, "│", "│", "│") for row in rows),
            rule("└", "─", "┴", "┘"),
        ]
    )


def make_table(headers: list[str], rows: list[list[Any]], title: str | None = None, plain: bool = False) -> Table:
    """A rich table of these rows (floats as format_value writes them). `plain`: for a log or a
    pipe, no box around it, only a rule under the headers, so it reads as text."""
    from rich import box
    from rich.table import Table

    table = Table(
        *headers,
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD if plain else box.HEAVY_HEAD,
        show_edge=not plain,
        pad_edge=not plain,
    )
    for row in rows:
        table.add_row(*(format_value(v) for v in row))
    return table


def table_text(headers: list[str], rows: list[list[Any]]) -> str:
    """The table as plain text for a log or a pipe: no colours, no wrapping however wide its rows are
    (a params column can be long), no trailing spaces."""
    import io

    from rich.console import Console as RichConsole

    out = io.StringIO()
    RichConsole(file=out, width=100_000, color_system=None, force_terminal=False, highlight=False).print(
        make_table(headers, rows, plain=True)
    )
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")


def _spent_text(costs: list[Cost]) -> str:
    """The cells' GPU-hours and CPU-hours so far (this command's cells, tuning and repeats)."""
    return f"{sum(c.gpu_hours for c in costs):.4g} GPU-hours, {sum(c.cpu_hours for c in costs):.4g} CPU-hours spent"


def _best_of(run: CellRun, trials: list[FrozenTrial]) -> FrozenTrial | None:
    """best_trial(run.study) from trials read already: the best COMPLETE one; None for several
    objectives."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    if study_is_multi(run.study):
        return None
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pick = max if run.study.direction == StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: float(t.value or 0.0)) if complete else None


def _best_text(run: CellRun, best: FrozenTrial | None) -> str:
    """A tuning run's best validation value; for repeats, the mean test value so far."""
    from ._studies import PHASE_REPEAT

    if run.phase == PHASE_REPEAT:
        from ._repeats import summary

        mean = summary(run.study).get("test_mean")
        return f"test {format_value(mean)}" if mean is not None else "-"
    if study_is_multi(run.study):
        return f"front of {len(front(run.study))}"
    return format_value(best.value) if best else "-"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _clock(seconds: float) -> str:
    if math.isnan(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
