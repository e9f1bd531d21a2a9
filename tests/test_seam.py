"""bench reaches its sweeper through one public module, hydra_plugins.bench_sweeper.api."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hydra_plugins.bench_sweeper.api as api
from bench.paths import REPO_ROOT

SEAM = "hydra_plugins.bench_sweeper.api"


def _sweeper_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the sweeper package in one file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if node.module.startswith("hydra_plugins.bench_sweeper") and not any(m == SEAM for m in modules):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("hydra_plugins.bench_sweeper")]
    return found


def test_bench_imports_only_the_sweepers_public_module():
    stray = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {module}"
        for path in sorted((REPO_ROOT / "src" / "bench").rglob("*.py"))
        for line, module in _sweeper_imports(path)
    ]
    assert not stray, "bench must import the sweeper through hydra_plugins.bench_sweeper.api only:\n" + "\n".join(stray)


def test_the_check_finds_an_import_behind_the_seam(tmp_path):
    """The scan itself: an underscore module, a bare import and an import inside a function are seen."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from hydra_plugins.bench_sweeper._masking import mask_text\n"
        "import hydra_plugins.bench_sweeper.trial\n"
        "def f():\n    from hydra_plugins.bench_sweeper import _cells\n"
        "from hydra_plugins.bench_sweeper.api import mask_text\n"
    )
    assert [line for line, _ in _sweeper_imports(bad)] == [1, 2, 4]


def test_every_public_name_exists_and_the_seam_stays_light():
    """Hydra imports the seam on every start (its plugin scan): it must not pull in optuna, ray,
    submitit or torch."""
    assert all(hasattr(api, name) for name in api.__all__)
    code = f"import sys, {SEAM}; print(sorted(m for m in ('optuna', 'ray', 'submitit', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
