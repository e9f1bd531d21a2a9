"""Run the landscape stub through the bench sweeper and read back what it left (results.csv)."""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

APP = Path(__file__).parent / "landscape_app.py"


def sweep(*overrides: str) -> list[dict[str, str]]:
    """One multirun in a fresh sweep dir: results.csv rows."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, str(APP), "-m", f"hydra.sweep.dir={tmp}/sweep", *overrides], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        with open(Path(tmp) / "sweep" / "results.csv") as f:
            return list(csv.DictReader(f))


def cells(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """A cell's rows in trial order."""
    out: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: int(r["trial"])):
        out.setdefault(row["cell"], []).append(row)
    return out
