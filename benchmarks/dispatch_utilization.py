"""Worker utilisation and per-trial dispatch overhead of the bench sweeper.

    python benchmarks/dispatch_utilization.py [--launcher basic|submitit_local|ray|slurm] [--slots 4] [--repeats 5]

Runs 4 cells x 16 trials of a stub task that sleeps a lognormal time (sigma 0.8) chosen from the
sampled parameter, through `python -m`-style Hydra multirun with the bench sweeper. Prints:
  utilisation = summed busy time / (slots x span from first start to last end)
  overhead    = idle slot-time per trial = (slots x span - busy) / trials
  refill gap  = time from a slot freeing to the next trial starting on it (the per-trial dispatch
                latency), for the first and second half of the trials: it must not grow as trials
                accumulate
  ideal       = the utilisation of a zero-overhead, no-barrier dispatcher on the very same
                durations (greedy list scheduling): the ceiling set by the final drain, when the
                last trials run and other slots have nothing left to take
  barrier     = the utilisation a batch-barrier sweeper (launch n_jobs, wait for all) would get
                on the very same durations, for comparison
  steady      = utilisation while work remained (first start to last trial's start): the
                "no worker idles while any cell has work left" figure, without the drain
  phases      = with --repeats N (each cell's best params re-run with N seeds): the utilisation of
                the same durations scheduled tune-then-repeat, all tuning first, then a barrier,
                then all repeats, each phase ending with its own drain (zero overhead otherwise)
Timings come from inside the trials, so launcher start-up (a Ray cluster, a process pool) is not
counted, but the gap between one trial's end and the next trial's start on a slot is.
"""

from __future__ import annotations

import argparse
import heapq
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = Path(__file__).parent / "sleep_app" / "sleep_app.py"
LAUNCHERS = {
    "basic": [],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.submitit_folder={sweep_dir}/.submitit"],
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus={slots}", "+hydra.launcher.ray.remote.num_cpus=1"],
    # Needs a running SLURM (scripts/slurm-up.sh, then export SLURM_CONF=...).
    "slurm": [
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.submitit_folder={sweep_dir}/.submitit/%j",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=30",
        "hydra.sweeper.poll_interval=0.2",
    ],
}


def run(launcher: str, slots: int, cells: int, trials: int, median_s: float, repeats: int = 0) -> dict:
    sweep_dir = Path(tempfile.mkdtemp(prefix=f"bench-util-{launcher}-"))
    args = [
        sys.executable,
        str(APP),
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        "cell=" + ",".join(f"c{i + 1}" for i in range(cells)),
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.n_jobs={slots}",
        f"median_s={median_s}",
        f"hydra.sweeper.repeats={repeats}",
    ]
    args += [a.format(sweep_dir=sweep_dir, slots=slots) for a in LAUNCHERS[launcher]]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"sweep failed:\n{proc.stderr[-3000:]}")
    timings = sorted((json.loads(p.read_text()) for p in sweep_dir.glob("*/timing.json")), key=lambda t: t["start"])
    return {"timings": timings, "wall": wall, "sweep_dir": sweep_dir}


def summarise(timings: list[dict], slots: int) -> dict:
    span = max(t["end"] for t in timings) - min(t["start"] for t in timings)
    durations = [t["end"] - t["start"] for t in timings]
    busy = sum(durations)
    n = len(timings)
    half = n // 2

    # The k-th trial (in start order, after the first `slots`) fills the slot freed by the
    # (k - slots)-th end.
    ends = sorted(t["end"] for t in timings)
    gaps = [timings[k]["start"] - ends[k - slots] for k in range(slots, n)]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731

    # Same durations, in the same order, through a barrier: each batch lasts as long as its slowest.
    barrier_span = sum(max(durations[i : i + slots]) for i in range(0, n, slots))
    # ...and through a dispatcher with no overhead at all: each trial goes to the first free slot.
    ideal_span = greedy_span(durations, slots)
    # Tune-then-repeat: every tuning trial, a barrier, then every repeat.
    tuning = [d for d, t in zip(durations, timings) if t.get("phase") != "repeat"]
    repeated = [d for d, t in zip(durations, timings) if t.get("phase") == "repeat"]
    phases_span = greedy_span(tuning, slots) + (greedy_span(repeated, slots) if repeated else 0.0)
    # While work remained: clip every trial to the window [first start, last start].
    first, last_start = timings[0]["start"], max(t["start"] for t in timings)
    steady_busy = sum(max(0.0, min(t["end"], last_start) - t["start"]) for t in timings)
    return {
        "trials": n,
        "span_s": span,
        "busy_s": busy,
        "utilisation": busy / (slots * span),
        "overhead_s": (slots * span - busy) / n,
        "gap_s": mean(gaps),
        "gap_first_half_s": mean(gaps[:half]),
        "gap_second_half_s": mean(gaps[half:]),
        "barrier_utilisation": busy / (slots * barrier_span),
        "ideal_utilisation": busy / (slots * ideal_span),
        "phases_utilisation": busy / (slots * phases_span),
        "repeats": len(repeated),
        "steady_utilisation": steady_busy / (slots * (last_start - first)) if last_start > first else 1.0,
    }


def greedy_span(durations: list[float], slots: int) -> float:
    """Makespan of a zero-overhead dispatcher: each trial, in order, goes to the first free slot."""
    free_at = [0.0] * slots
    for d in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + d)
    return max(free_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="basic")
    parser.add_argument("--slots", type=int, default=4, help="n_jobs (the basic launcher always has 1)")
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--trials", type=int, default=16, help="per cell")
    parser.add_argument("--median-s", type=float, default=1.0, help="median trial duration")
    parser.add_argument("--repeats", type=int, default=0, help="seed repeats per cell after its tuning")
    args = parser.parse_args()
    slots = 1 if args.launcher == "basic" else args.slots
    result = run(args.launcher, slots, args.cells, args.trials, args.median_s, args.repeats)
    stats = summarise(result["timings"], slots)
    print(
        f"launcher={args.launcher} slots={slots} cells={args.cells} trials/cell={args.trials} "
        f"repeats/cell={args.repeats} median={args.median_s}s sigma=0.8  (sweep dir {result['sweep_dir']})"
    )
    print(f"  trials run            {stats['trials']} ({stats['repeats']} of them repeats)")
    print(f"  span                  {stats['span_s']:.1f} s  (driver wall time {result['wall']:.1f} s)")
    print(f"  busy (sum of trials)  {stats['busy_s']:.1f} s")
    print(f"  utilisation           {stats['utilisation']:.3f}")
    print(f"  overhead per trial    {stats['overhead_s']:.3f} s idle slot-time")
    print(
        f"  refill gap            {stats['gap_s']:.3f} s  (first half {stats['gap_first_half_s']:.3f} s, "
        f"second half {stats['gap_second_half_s']:.3f} s)"
    )
    print(f"  steady-state utilisation (while work remained)   {stats['steady_utilisation']:.3f}")
    print(f"  same durations, zero-overhead no-barrier (ideal) {stats['ideal_utilisation']:.3f}")
    print(f"  same durations, batch barrier of {slots}             {stats['barrier_utilisation']:.3f}")
    if stats["repeats"]:
        print(f"  same durations, tune-then-repeat phase barrier   {stats['phases_utilisation']:.3f}")
        print(
            f"  pipelined / ideal                                {stats['utilisation'] / stats['ideal_utilisation']:.3f}"
        )


if __name__ == "__main__":
    main()
