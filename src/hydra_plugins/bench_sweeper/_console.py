"""What a person watching the driver sees: one line per trial event, and a per-cell progress view.

On a terminal the view is a live rich table under the event lines; otherwise (a log file, CI) the
same table is logged as plain text every `plain_every_s` seconds. Event lines go through the
sweeper's logger as well, so they also reach log files.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from ._cost import Cost, total
from ._objectives import front, study_is_multi
from ._outcome import last_line
from ._results import best_trial, format_value

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial
    from rich.table import Table

    from ._loop_state import CellRun

log = logging.getLogger(__name__)
HEADERS = ["cell", "done", "running", "pruned", "failed", "best", "GPU-h", "CPU-h", "elapsed", "ETA"]


class Console:
    def __init__(self, runs: list[CellRun], slots: int, live: bool | None = None, plain_every_s: float = 30.0) -> None:
        self.runs, self.slots = runs, slots  # runs: the loop's own list, which repeats join
        self.live_view: Any = None
        self.live = sys.stderr.isatty() if live is None else live
        self.plain_every_s = plain_every_s
        self._last_plain = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Console:
        if self.live:
            from rich.console import Console as RichConsole
            from rich.live import Live

            self.live_view = Live(
                self._rich_table(),
                console=RichConsole(stderr=True),
                refresh_per_second=2,
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self.live_view.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live_view is not None:  # its last rendering stays on the terminal
            self.live_view.update(self._rich_table())
            self.live_view.__exit__(*exc)
            self.live_view = None
        else:
            log.info("final\n%s", self.plain_table())

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
            self.live_view.update(self._rich_table())
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            log.info("progress\n%s", self.plain_table())

    # -- the table ------------------------------------------------------------------------------
    def _costs(self) -> list[Cost]:
        """Each run's cost so far (earlier runs of the sweep included), read once per rendering."""
        return [total(run.study.get_trials(deepcopy=False)) for run in self.runs]

    def rows(self, costs: list[Cost] | None = None) -> list[list[str]]:
        now = time.monotonic()
        costs = costs if costs is not None else self._costs()
        open_cells = max(1, sum(1 for r in self.runs if r.wants_trials or r.in_flight))
        every = [d for r in self.runs for d in r.durations]
        rows = []
        for run, cost in zip(self.runs, costs):
            best = best_trial(run.study)
            remaining = 0 if run.stopped or run.ended else max(0, run.target - run.done)
            mean = _mean(run.durations) or _mean(every)
            eta = remaining * mean * open_cells / self.slots if mean else math.nan
            status = " (stopped)" if run.stopped else " (ended)" if run.ended else ""
            rows.append(
                [
                    run.label + status,
                    f"{run.done}/{run.target}",
                    str(run.in_flight),
                    str(run.pruned),
                    str(run.failed),
                    _best_text(run, best),
                    f"{cost.gpu_hours:.3g}",
                    f"{cost.cpu_hours:.3g}",
                    _clock(now - run.started) if run.started else "-",
                    _clock(eta) if remaining else "-",
                ]
            )
        return rows

    def plain_table(self) -> str:
        costs = self._costs()
        return f"{_spent_text(costs)}\n" + table_text(HEADERS, self.rows(costs))

    def _rich_table(self) -> Table:
        costs = self._costs()
        return make_table(HEADERS, self.rows(costs), title=f"bench sweep: {_spent_text(costs)}")


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
