"""How long `python -m bench --help` takes, as a user waits for it: a fresh interpreter each time.

    python benchmarks/help_time.py [--runs 5] [--hydra]

Prints each run's wall time and their median. --hydra also times Hydra's own rendering of the same
help (what `--help` ran before bench/cli.py: Hydra builds a config repository per group and option
to list them), in the same run, so the two compare on the same machine and load. The goal: under
1 s, median of 5.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

# Hydra's app_help, as `python -m bench --help` ran it before bench answered --help itself.
HYDRA_HELP = """
import sys
import hydra
import bench  # noqa: F401
from bench.paths import CONFIG_PATH
sys.argv = ["bench", "--help"]
hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(lambda cfg: None)()
"""


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or "== Configuration groups ==" not in done.stdout:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hydra", action="store_true", help="also time Hydra's rendering of the help")
    args = parser.parse_args()
    rows = [("python -m bench --help", timed([sys.executable, "-m", "bench", "--help"], args.runs))]
    if args.hydra:
        rows.append(("Hydra's --help (before)", timed([sys.executable, "-c", HYDRA_HELP], args.runs)))
    for name, times in rows:
        print(
            f"{name}: median {statistics.median(times):.3f} s of {args.runs} ({', '.join(f'{t:.3f}' for t in times)})"
        )


if __name__ == "__main__":
    main()
