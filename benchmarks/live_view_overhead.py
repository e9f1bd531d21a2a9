"""What the driver's live console costs a trial that runs in the driver's own thread (the local
launcher), where the view's drawing thread competes with the trial for the interpreter.

    python benchmarks/live_view_overhead.py [--trials 7] [--epochs 10] [--epoch-s 0.3] [--cells 8]

A trial of fixed work: --epochs epochs of pure-Python arithmetic of about --epoch-s each (holding
the GIL the whole time: the worst case for a drawing thread, since torch's kernels release it),
reporting its progress after each epoch as bench's TrialProgress callback does (report_progress:
one write to the sweep's journal storage). Timed with the view off (no view: what a log file gets,
and what the local launcher had before) and on (the sweeper's Console: rich Live drawing the cells'
table and the running trial's row once a second onto a terminal, reading the storage at most once
a second), alternately in the same process, --trials times each. The storage holds --cells cells
with 8 finished trials each, so every read of the view is a real one.

Prints each mode's median trial time and their ratio (on / off; the goal is at most 1.01), and the
CPU time the view's thread used during the "on" trials as a share of their time: on a busy machine
the wall-clock ratio moves by a few per cent from trial to trial either way, while that share is
what the view can add at most, and how often the trial's thread had to wait (its voluntary context
switches: the interpreter handed to the view and back, the storage's lock). --control runs the
"on" trials without the view as well: the spread of that comparison is the noise of the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from rich.console import Console as RichConsole

from hydra_plugins.bench_sweeper._cells import Cell
from hydra_plugins.bench_sweeper._console import Console
from hydra_plugins.bench_sweeper._loop_state import CellRun
from hydra_plugins.bench_sweeper._studies import open_storage
from hydra_plugins.bench_sweeper.api import report_progress


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of spin() that take about `seconds` on this machine now."""
    n = 100_000
    while True:
        started = time.perf_counter()
        spin(n)
        took = time.perf_counter() - started
        if took > 0.05:
            return int(n * seconds / took)
        n *= 4


def make_runs(storage: optuna.storages.BaseStorage, cells: int) -> list[CellRun]:
    runs = []
    space = {"lr": FloatDistribution(1e-5, 1e-2, log=True)}
    for i in range(cells):
        label = f"task=synthetic_{i},model=prithvi_tiny"
        cell = Cell(i, [], label, {"task": f"synthetic_{i}"}, direction="maximize", distributions=space)
        study = optuna.create_study(study_name=label, storage=storage, direction="maximize")
        for _ in range(8):  # finished trials, as a sweep under way has
            trial = study.ask(space)
            for epoch in range(1, 11):
                report_progress(trial, epoch, 10, 0.05 * epoch)
            study.tell(trial, 0.5)
        runs.append(CellRun(cell, study, target=16, complete=8, started=time.monotonic()))
    return runs


def one_trial(run: CellRun, console: Console | None, epochs: int, n: int) -> tuple[float, float, int]:
    """(the trial's wall time, the CPU time other threads of the process used meanwhile (the
    view's), the times the trial's thread waited (for the interpreter, or the storage's lock))"""
    trial = run.study.ask(run.cell.distributions)
    switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    started, process, thread = time.perf_counter(), time.process_time(), time.thread_time()
    if console is not None:
        console.trial_started(run, trial.number, time.monotonic())
    run.in_flight += 1
    for epoch in range(1, epochs + 1):
        spin(n)
        report_progress(trial, epoch, epochs, 0.05 * epoch)
    took = time.perf_counter() - started
    others = (time.process_time() - process) - (time.thread_time() - thread)
    waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - switches
    run.in_flight -= 1
    if console is not None:
        console.trial_ended(run, trial.number)
    run.study.tell(trial, 0.5)
    return took, others, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=7, help="trials timed per mode")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-s", type=float, default=0.3)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument(
        "--control", action="store_true", help="the 'on' trials without the view too: the noise of the comparison"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        storage = open_storage(str(Path(tmp) / "optuna.journal"))
        runs = make_runs(storage, args.cells)
        terminal = RichConsole(file=devnull, force_terminal=True, width=160, color_system="truecolor")
        console = Console(runs, 1, live=True, terminal=terminal)
        n = calibrate(args.epoch_s)
        times: dict[str, list[float]] = {"off": [], "on": []}
        view_cpu: list[float] = []  # per "on" trial: the CPU time the drawing thread used
        waits: dict[str, list[int]] = {"off": [], "on": []}
        with console:
            console.live_view.stop()  # drawn only while an "on" trial runs
            for i in range(args.trials):
                for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    drawn = mode == "on" and not args.control
                    if drawn:
                        console.live_view.start()
                    took, others, waited = one_trial(runs[0], console if drawn else None, args.epochs, n)
                    times[mode].append(took)
                    waits[mode].append(waited)
                    if mode == "on":
                        view_cpu.append(others)
                    if drawn:
                        console.live_view.stop()
            console.live_view.start()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(
        f"trial of {args.epochs} epochs x ~{args.epoch_s} s, {args.cells} cells in the storage, {args.trials} trials per mode"
    )
    print(f"view off: median {off:.3f} s ({', '.join(f'{t:.3f}' for t in times['off'])})")
    print(f"view on:  median {on:.3f} s ({', '.join(f'{t:.3f}' for t in times['on'])})")
    pairs = [b / a for a, b in zip(times["off"], times["on"])]  # each "on" trial against its neighbour
    spread = 2 * statistics.stdev(pairs) / len(pairs) ** 0.5 if len(pairs) > 1 else math.nan
    print(
        f"ratio on/off: {on / off:.4f} of the medians; of the pairs: median {statistics.median(pairs):.4f}, "
        f"mean {statistics.mean(pairs):.4f} +- {spread:.4f} (2 standard errors; goal: at most 1.01)"
    )
    print(
        f"the view's own CPU time, as a share of the trial's: {sum(view_cpu) / sum(times['on']):.2%} "
        "(what it can add at most where the trial holds the interpreter the whole time)"
    )
    print(
        "the trial's thread waited (voluntary context switches per trial, median): "
        f"{statistics.median(waits['off'])} with the view off, {statistics.median(waits['on'])} on"
    )


if __name__ == "__main__":
    main()
