"""What produced the report, for its provenance table: the commands, bench's commit and version,
the key packages, the date, the hardware, and the compute the sweeps spent.

The sweep's command is rebuilt from the multirun.yaml Hydra writes into the sweep dir (its
overrides, masked as the sweeper masks what it writes); the hardware is the machine the report
runs on, which is the sweep's for a local sweep and says so for the others. Nothing here imports
torch: a GPU is named by nvidia-smi.
"""

from __future__ import annotations

import platform
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from bench.tracking.environment import git_commit, package_versions
from hydra_plugins.bench_sweeper.api import mask_override, mask_text


def sweep_command(sweep: Path) -> str | None:
    """`python -m bench -m <overrides>` as Hydra recorded the sweep's; None when not recorded."""
    path = sweep / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
        overrides = hydra.get("overrides", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    given = [o for o in (overrides.get("hydra") or []) if o != "hydra.mode=MULTIRUN"]
    given += list(overrides.get("task") or [])
    name = str((hydra.get("job") or {}).get("name", "bench"))
    # bench's own sweeps; any other Hydra app using the sweeper is named by its script
    app = ["python", "-m", "bench"] if name == "bench" else ["python", f"{name}.py"]
    return shlex.join([*app, "-m", *(mask_override(str(o)) for o in given)])


def _cpu() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _gpus() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none visible (no nvidia-smi)"
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi did not answer)"
    names = [n.strip() for n in found.stdout.splitlines() if n.strip()]
    if found.returncode != 0 or not names:
        return "none visible (nvidia-smi found none)"
    return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))


def _hours(costs: pd.DataFrame | None) -> str:
    if costs is None:
        return "not recorded by the inputs"
    gpu, cpu = costs["gpu_hours"].sum(min_count=1), costs["cpu_hours"].sum(min_count=1)
    known = ", ".join(f"{value:.3g} {unit}-hours" for value, unit in ((gpu, "GPU"), (cpu, "CPU")) if pd.notna(value))
    return f"{known} (tuning and repeats, every trial that ran)" if known else "not recorded by the inputs"


def table(argv: list[str], sources: list[str], sweeps: list[Path], costs: pd.DataFrame | None) -> pd.DataFrame:
    """Two columns, what and value, one row per fact."""
    versions = package_versions()
    # masked: a --tracking-uri may carry a password (http://user:password@host)
    facts = [("report command", mask_text(shlex.join(["python", "-m", "bench.report", *argv])))]
    for sweep in sweeps:
        command = sweep_command(sweep)
        facts.append((f"sweep {sweep.name}", command or f"{sweep} (its command was not recorded)"))
    others = [s for s in sources if not Path(s).is_dir()]
    if others:
        facts.append(("other inputs", ", ".join(others)))
    facts += [
        ("bench", f"{versions.pop('bench')}, commit {git_commit() or 'unknown (not a git checkout)'}"),
        ("packages", ", ".join(f"{name} {version}" for name, version in versions.items())),
        ("python", sys.version.split()[0]),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU (this machine)", _cpu()),
        ("GPU (this machine)", _gpus()),
        ("compute spent", _hours(costs)),
    ]
    return pd.DataFrame(facts, columns=["what", "value"])
