"""Wall time of each catalog preset's dry run, as a user types it (a fresh `python -m bench`
process: Hydra start-up, composing every cell, every check, without torch).

    python benchmarks/catalog_dry_run.py [--repeat 3] [--models prithvi,terramind_base] [--presets geobench_v2]

Prints, per preset, the cell count, the exit status (non-zero without the data: each missing
dataset is listed once), the best and median wall time of --repeat runs and the best and median CPU
seconds (user + system, planning workers included), and whether torch was imported (it must not
be). On a shared machine the wall time follows the load; the CPU seconds much less so: compare
changes by those. Run it with and without the data ($GEO_BENCH_DIR, ...) to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

PRESETS = ["geobench_v1", "hls", "geobench_v2_core", "geobench_v2"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="prithvi,resnet50")
    parser.add_argument("--presets", default=",".join(PRESETS))
    args = parser.parse_args()
    probe = (
        "import sys, runpy; sys.argv = ['bench'] + sys.argv[1:]; "
        "import atexit; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr)); "
        "runpy.run_module('bench', run_name='__main__')"
    )
    print(f"{'preset':18} {'cells':>5} {'exit':>4} {'best s':>7} {'median s':>8} {'best cpu':>8} {'med cpu':>8}  torch")
    for preset in args.presets.split(","):
        times, cpu, cells, code, torch = [], [], 0, None, None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                result = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        probe,
                        "-m",
                        f"experiment={preset}",
                        f"model={args.models}",
                        "hydra.sweeper.dry_run=true",
                        f"hydra.sweep.dir={tmp}/sweep",
                    ],
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )
                times.append(time.perf_counter() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            cells = len(re.findall(r"^cell ", result.stdout, re.M))
            code = result.returncode
            torch = re.search(r"torch imported: (\w+)", result.stderr)
        print(
            f"{preset:18} {cells:>5} {code:>4} {min(times):>7.2f} {statistics.median(times):>8.2f} "
            f"{min(cpu):>8.2f} {statistics.median(cpu):>8.2f}  "
            f"{torch.group(1) if torch else '?'}"
        )


if __name__ == "__main__":
    main()
