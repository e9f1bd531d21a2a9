"""Does the bench sweeper's driver keep its per-trial cost flat as a sweep grows? No training.

    python benchmarks/driver_scale.py [--trials 10000] [--cells 200] [--slots 1000] [--median-s 600]
                                      [--profile out.prof]

The sleep app (benchmarks/sleep_app) is swept in this process with the bench sweeper, but its
launcher is replaced by a fake one with a virtual clock: a submitted trial "runs" for a lognormal
duration (sigma 0.8 around --median-s) of virtual time, and wait() hands back the trial that ends
first (a heap), its value at once. Nothing sleeps, so what is measured is the driver's own CPU:
asking Optuna, writing the journal, results.csv, the console. The virtual clock also advances by
the driver CPU spent between two waits, so a driver too slow to refill its slots shows up as idle
slot-time. Prints:
  driver CPU per trial   first and last 1,000 trials (or 10% of them when fewer), and their ratio
                         (goal: the last within 1.2x the first; under 20 ms each)
  results.csv rewrite    one write_results() of the whole sweep at its end, and its rows
  journal size           optuna.journal at the end, bytes per trial
  memory                 the driver's peak RSS
  utilisation            busy slot-time / (slots x virtual span), against the zero-overhead ideal of
                         the same durations: can this driver keep --slots slots of such trials busy?

What the profile showed (cProfile via --profile, --trials 1000 --cells 20 --slots 100, 2 shared cores):
  before: driver CPU per trial 34 ms over the first 100 trials, 167 ms over the last 100 (4.9x),
    108 s CPU in all. Of 196 s profiled, 146 s was the tables' rewrite after every trial's end
    (_impl.write_tables): 111 s of it listing the sweep's repeats studies (repeat_records ->
    sweep_studies -> optuna.get_all_study_summaries, which deep-copies every trial of every study
    to count them: 36 M deepcopy calls), 36 s write_results itself (every row, every time).
    The other large item, 34 s, is Optuna's journal: an fsync per record (about 12 per trial:
    ask, params, each user attr, tell), a constant per trial and wall time rather than CPU.
  after (sweep_studies reads storage.get_all_studies(), no trials; the tables rewritten at most as
    often as keeps them to 5% of the driver's time, _results.Throttled, and at the sweep's end):
    4-11 ms CPU per trial, flat (the last 100 cheaper than the first: the first include the
    start-up), 12.9 s CPU in all; what is left is the journal's fsync (wall) and Hydra's override
    parsing of each trial's command line.
The full setting after the fix (10,000 trials, 200 cells, 1,000 slots, 10-minute median): driver CPU
per trial 9.1 ms over the first 1,000, 3.5 ms over the last 1,000 (0.38x); 91 s CPU, 480 s wall
(the journal's fsyncs) in all, i.e. 48 ms wall per trial against the 600 ms that 1,000 slots of
10-minute trials allow; a results.csv rewrite of 10,000 rows 345 ms; journal 18.3 MB; peak RSS
136 MB; utilisation equal to the zero-overhead ideal of the same durations (ratio 1.000).
Before the fix the full setting was not run: at 1,000 trials the last 100 already cost 167 ms
each and the cost grows with the trial count.
What it does not fix: with Hydra's basic launcher and 1 s trials (dispatch_utilization.py) the
refill gap stays about 0.24 s before and after (0.819 -> 0.825 utilisation on the loaded test
machine), because that gap is Hydra composing each trial's config (load_sweep_config, about
2/3 of it) and run_job saving the job's config files, not the driver's bookkeeping.
Not done: compacting the journal. Optuna 5.0's JournalFileBackend has no snapshot (only the Redis
backend implements save_snapshot), and the journal is the sweep's store of truth; it grows by
about 1.8 kB per trial.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dispatch_utilization import greedy_span  # this script's folder is on sys.path when it is run

APP = Path(__file__).parent / "sleep_app" / "sleep_app.py"


class VirtualDispatcher:
    """The fake launcher: jobs end in virtual-time order; the driver's CPU advances the clock."""

    def __init__(self, median_s: float, seed: int = 0) -> None:
        from hydra_plugins.bench_sweeper._dispatch import Dispatcher

        self.base = Dispatcher
        self.median_s, self.rng = median_s, random.Random(seed)
        self.clock = 0.0
        self.heap: list[tuple[float, int, float]] = []  # (end, ticket, duration)
        self.cpu_mark = self.wait_mark = time.process_time()
        self.per_trial_cpu: list[float] = []  # driver CPU between two finished trials
        self.busy = 0.0
        self.waits = 0
        self.durations: list[float] = []

    def _tick(self) -> float:
        now = time.process_time()
        spent, self.cpu_mark = now - self.cpu_mark, now
        self.clock += spent
        return spent

    def submit(self, prepared: Any, ticket: int) -> None:
        self._tick()
        duration = self.median_s * self.rng.lognormvariate(0.0, 0.8)
        self.durations.append(duration)
        heapq.heappush(self.heap, (self.clock + duration, ticket, duration))

    def wait(self, timeout: float) -> list[Any]:
        from hydra.core.utils import JobReturn, JobStatus

        from hydra_plugins.bench_sweeper._dispatch import Finished

        self._tick()
        # wait to wait: recording the finished trial, asking for the next, submitting it
        spent, self.wait_mark = self.cpu_mark - self.wait_mark, self.cpu_mark
        if not self.heap:
            return []
        end, ticket, duration = heapq.heappop(self.heap)
        self.clock = max(self.clock, end)
        self.busy += duration
        if self.waits:  # the first wait follows the initial fill of every slot, not one trial
            self.per_trial_cpu.append(spent)
        self.waits += 1
        ret = JobReturn()
        ret.status = JobStatus.COMPLETED
        ret._return_value = duration / self.median_s
        return [Finished(ticket, ret, elapsed_s=duration)]


def make_fake(virtual: VirtualDispatcher) -> Any:
    from hydra_plugins.bench_sweeper._dispatch import Dispatcher, Prepared

    class Fake(Dispatcher):
        max_slots = None

        def prepare(self, overrides: list[str], job_num: int) -> Prepared:
            return Prepared(overrides, job_num)

        def submit(self, prepared: Prepared, ticket: int) -> None:
            virtual.submit(prepared, ticket)

        def wait(self, timeout: float) -> list[Any]:
            return virtual.wait(timeout)

    return Fake()


def sweep(sweep_dir: Path, trials: int, cells: int, slots: int, virtual: VirtualDispatcher) -> None:
    import runpy

    import hydra_plugins.bench_sweeper._dispatch as dispatch

    dispatch.make_dispatcher = lambda *a, **k: make_fake(virtual)  # type: ignore[assignment]
    per_cell = max(1, trials // cells)
    sys.argv = [
        "sleep_app",
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        "cell=" + ",".join(f"c{i + 1}" for i in range(cells)),
        f"hydra.sweeper.n_trials={per_cell}",
        f"hydra.sweeper.n_jobs={slots}",
        "hydra.sweeper.progress_every_s=1000000",
        "hydra/hydra_logging=none",
        "hydra/job_logging=none",
    ]
    runpy.run_path(str(APP), run_name="__main__")  # as a script: Hydra finds conf/ beside it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--slots", type=int, default=1_000)
    parser.add_argument("--median-s", type=float, default=600.0, help="median virtual trial duration")
    parser.add_argument("--profile", help="write a cProfile of the sweep here")
    args = parser.parse_args()
    sweep_dir = Path(tempfile.mkdtemp(prefix="bench-driver-scale-"))
    virtual = VirtualDispatcher(args.median_s)
    started_cpu, started_wall = time.process_time(), time.time()
    if args.profile:
        import cProfile

        cProfile.runctx(
            "sweep(sweep_dir, args.trials, args.cells, args.slots, virtual)", globals(), locals(), args.profile
        )
    else:
        try:
            sweep(sweep_dir, args.trials, args.cells, args.slots, virtual)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    cpu, wall = time.process_time() - started_cpu, time.time() - started_wall

    from hydra_plugins.bench_sweeper._results import write_results
    from hydra_plugins.bench_sweeper._studies import open_storage, sweep_studies

    journal = sweep_dir / "optuna.journal"
    storage = open_storage(str(journal))
    records = list(
        sweep_studies(storage, __import__("json").loads((sweep_dir / "sweep.json").read_text())["sweep_id"]).values()
    )
    t0 = time.perf_counter()
    write_results(str(sweep_dir), records, storage)
    rewrite = time.perf_counter() - t0
    rows = sum(1 for _ in open(sweep_dir / "results.csv")) - 1

    per = virtual.per_trial_cpu
    n = len(per)
    window = min(1000, max(1, n // 10))
    first, last = sum(per[:window]) / window, sum(per[-window:]) / window
    span = virtual.clock
    ideal = virtual.busy / (args.slots * greedy_span(virtual.durations, args.slots))
    util = virtual.busy / (args.slots * span) if span else float("nan")
    size = os.path.getsize(journal)
    print(
        f"trials={n} cells={args.cells} slots={args.slots} median={args.median_s}s sigma=0.8  (sweep dir {sweep_dir})"
    )
    print(f"  driver CPU per trial  first {window}: {first * 1000:.2f} ms   last {window}: {last * 1000:.2f} ms")
    print(f"                        last/first {last / first:.2f}  (goal <= 1.2; each < 20 ms)")
    print(f"  driver total          {cpu:.1f} s CPU, {wall:.1f} s wall")
    print(f"  results.csv rewrite   {rewrite * 1000:.1f} ms for {rows} rows")
    print(f"  journal size          {size / 1e6:.2f} MB ({size / max(n, 1):.0f} B per trial)")
    print(f"  memory                peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"  utilisation           {util:.3f} of slots (zero-overhead ideal {ideal:.3f}; ratio {util / ideal:.3f})")


if __name__ == "__main__":
    main()
