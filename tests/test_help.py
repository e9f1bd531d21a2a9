"""`python -m bench --help`: bench renders it (bench/cli.py) from the primary config's hydra.help, and
every command its header shows runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import write_cost_sweep
from tests.warm_cli import python_m

pytestmark = pytest.mark.duration(45)

ITERATE = Path(__file__).parent / "data" / "iterate" / "quick_test.yaml"


def header_commands(help_text: str) -> list[str]:
    """The `python -m ...` lines of the help's header (above its first `==` section)."""
    header = help_text.split("== Configuration groups ==")[0]
    return [line.strip() for line in header.splitlines() if line.strip().startswith("python -m ")]


def test_help_lists_the_groups_a_user_picks_and_hides_the_internal_ones(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    groups = dict(re.findall(r"^(\w+): (.+)$", result.stdout, re.M))
    assert {"model", "task", "search_space", "launcher", "experiment", "protocol", "pruning"} <= set(groups)
    assert not {"task_defaults", "model_defaults", "hydra"} & set(groups)
    assert "prithvi_tiny" in groups["model"].split(", ")
    assert "hparams:" in result.stdout and "lr: 0.001" in result.stdout  # the primary config's keys
    assert "--hydra-help" in result.stdout and "BENCH_DEBUG=1" in result.stdout  # the footer


def test_help_lists_the_groups_of_a_users_config_dir(run_cli, tmp_path):
    (tmp_path / "mine" / "task").mkdir(parents=True)
    (tmp_path / "mine" / "task" / "my_task.yaml").write_text("name: my_task\n")
    result = run_cli("--config-dir", str(tmp_path / "mine"), "--help")
    assert result.returncode == 0, result.stderr
    (tasks,) = re.findall(r"^task: (.+)$", result.stdout, re.M)
    assert {"my_task", "synthetic_seg"} <= set(tasks.split(", "))


def test_hydra_help_stays_hydras(run_cli):
    result = run_cli("--hydra-help")
    assert result.returncode == 0, result.stderr
    assert "Hydra (" in result.stdout and "--multirun" in result.stdout


def test_every_command_the_help_header_shows_runs(run_cli, tmp_path):
    """The header's lines run as they are written; a benchmark or a preset, which would train, as its dry
    run (hydra.sweeper.dry_run=true appended), and the placeholders filled with a sweep dir, an iterate
    config and an output folder."""
    shown = run_cli("--help").stdout
    commands = header_commands(shown)
    assert len(commands) >= 5, shown
    modules = {shlex.split(c)[2] for c in commands}
    assert {"bench", "bench.report", "bench.convert"} <= modules
    assert any("experiment=" in c for c in commands) and any("dry_run=true" in c for c in commands)
    sweep = write_cost_sweep(tmp_path / "example-sweep")
    fill = {
        "multirun_outputs/<sweep dir>": str(sweep),
        "<iterate.yaml>": str(ITERATE),
        "<config dir>": str(tmp_path / "converted"),
    }
    for command in commands:
        line = command
        for placeholder, value in fill.items():
            line = line.replace(placeholder, value)
        assert "<" not in line, f"a placeholder the test cannot fill: {command}"
        argv = shlex.split(line)[2:]  # after `python -m`
        module, args = argv[0], argv[1:]
        if module == "bench":
            if "-m" in args and not any(a.startswith("hydra.sweeper.dry_run=") for a in args):
                args.append("hydra.sweeper.dry_run=true")
            where = [f"hydra.sweep.dir={tmp_path / 'sweep'}"] if "-m" in args else []
            result = run_cli(*args, *where)
        else:
            result = python_m(module, *args, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, (
            f"`{command}` exited {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
        )
        if "-m" in args and module == "bench":
            assert "Dry run: nothing launched." in result.stdout, command
    assert (sweep / "report").is_dir()
    assert (tmp_path / "converted").is_dir()
    assert not (tmp_path / "sweep").exists()  # the dry runs created nothing


def test_help_piped_into_a_reader_that_stops_early_exits_quietly():
    """`python -m bench --help | head -1`: the pipe closes before the help is written (here a reader
    that exits at once, so the write always meets a closed pipe); no BrokenPipeError traceback."""
    import subprocess
    import sys

    shell = f"{shlex.quote(sys.executable)} -m bench --help | true; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
