"""The docs cannot go stale: every ```console command in README.md and docs/ runs, and the site builds.

A fenced block tagged `console` holds commands that run in seconds. Each `$ ` line is a command; the
lines under it, up to the next `$ ` line, are output it must print (each looked for as written, in
stdout and stderr together). A command must exit 0, unless the comment `<!-- docs-test: exit N -->`
right above the block asks for N. ```bash blocks are only shown (they train, start clusters or name
placeholders). docs/contributing.md says the same for writers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.paths import CONFIG_DIR, REPO_ROOT
from tests.helpers import write_cost_sweep

pytestmark = pytest.mark.duration(30)

MARKDOWN = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<marker>`{3,})(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=marker)[ \t]*$", re.M | re.S)
EXIT_MARK = re.compile(r"<!--\s*docs-test:\s*exit\s+(?P<code>\d+)\s*-->\s*$")
# The environment variables the catalog's tasks read their data roots from (conf/task*/: `env: NAME`).
DATASET_ENVS = sorted(
    {m for path in CONFIG_DIR.glob("task*/*.yaml") for m in re.findall(r"^\s*env:\s*(\w+)\s*$", path.read_text(), re.M)}
)


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    where: str  # file:line, the test's id
    exit_code: int
    commands: list[Command]


def console_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for fence in FENCE.finditer(text):
        if fence["info"].strip().split(" ")[0] != "console":
            continue
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = EXIT_MARK.search(before)
        commands: list[Command] = []
        for line in fence["body"].splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:].strip()))
            elif line.strip():
                assert commands, f"{path.name}: output before any `$ ` command in a console block"
                commands[-1].expected.append(line.strip())
        line_no = text.count("\n", 0, fence.start()) + 1
        blocks.append(Block(f"{path.relative_to(REPO_ROOT)}:{line_no}", int(mark["code"]) if mark else 0, commands))
    return blocks


BLOCKS = [block for path in MARKDOWN for block in console_blocks(path)]


def test_the_docs_show_commands_that_run():
    """The extraction itself: the README and the pages do mark commands to run, each block at least one."""
    assert any(block.where.startswith("README.md") for block in BLOCKS)
    assert sum(len(block.commands) for block in BLOCKS) >= 5
    assert all(block.commands for block in BLOCKS)
    assert DATASET_ENVS, "no dataset environment variable found in conf/task*/"


def test_the_readmes_links_reach_files():
    """mkdocs checks the site's links; the README is not part of the site, so its own are checked here."""
    targets = re.findall(r"\]\((?!https?://)([^)#\s]+)(?:#[^)]*)?\)", (REPO_ROOT / "README.md").read_text())
    assert targets
    assert not [t for t in targets if not (REPO_ROOT / t).exists()]


@pytest.fixture(scope="module")
def workdir_env(tmp_path_factory) -> dict[str, str]:
    """As a user from a clone, but with no datasets, no weights cache and the hub offline."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in DATASET_ENVS and k != "HYDRA_FULL_ERROR"}
    env.update(
        BENCH_DATA_DIR=str(tmp_path_factory.mktemp("data")),
        HOME=str(home),
        HF_HOME=str(home / "hf"),
        TORCH_HOME=str(home / "torch"),
        HF_HUB_OFFLINE="1",
        # `python` in a command is this interpreter (the project's venv).
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_console_block_runs(block: Block, tmp_path, workdir_env):
    write_cost_sweep(tmp_path / "example-sweep")
    for command in block.commands:
        argv = shlex.split(command.line)
        if argv[0] == "python":
            argv[0] = sys.executable
        done = subprocess.run(argv, cwd=tmp_path, env=workdir_env, capture_output=True, text=True, timeout=120)
        printed = done.stdout + done.stderr
        assert done.returncode == block.exit_code, (
            f"{block.where}: `{command.line}` exited {done.returncode}, the docs expect {block.exit_code}:\n{printed[-3000:]}"
        )
        missing = [line for line in command.expected if line not in printed]
        assert not missing, f"{block.where}: `{command.line}` did not print {missing}:\n{printed[-3000:]}"


def test_the_module_map_names_every_module():
    """docs/architecture.md's module map stays the code's: every module of bench and of its sweeper is named."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    packages = [REPO_ROOT / "src" / "bench", REPO_ROOT / "src" / "hydra_plugins" / "bench_sweeper"]
    modules = {p for package in packages for p in package.rglob("*.py") if p.name != "__init__.py"}
    unnamed = sorted(str(p.relative_to(REPO_ROOT)) for p in modules if p.name not in text)
    assert not unnamed, f"docs/architecture.md's module map does not name: {unnamed}"


def test_the_site_builds_strictly(tmp_path):
    """mkdocs --strict: a broken link or anchor, or a page left out of the nav, fails the build."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed next to this interpreter (make install)"
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()
