"""bench as a user installs it: the wheel built from this checkout, installed into a fresh venv
outside the checkout, run from another directory. Its configs come from the package
(pkg://bench.conf), a user's own folder is added with --config-dir, and nothing of the checkout is
imported.

The fresh venv gets the wheel alone (--no-deps); its dependencies are the project venv's, reached
through one .pth line naming that venv's site-packages (a path line, so the .pth files in that
folder, the checkout's editable install among them, are not processed)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from bench.paths import CONFIG_DIR, REPO_ROOT

pytestmark = pytest.mark.duration(60)

ITERATE = Path(__file__).parent / "data" / "iterate"


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.wheel = next((root / "dist").glob("bench-*.whl"))
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.bench = self.venv / "bin" / "bench"
        self.site = Path()  # the fresh venv's site-packages, set once it exists
        self.work = root / "work"  # the user's working directory: neither the checkout nor the venv
        self.env = {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root / "home"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "BENCH_DATA_DIR": str(root / "data"),
            "GEO_BENCH_DIR": str(root / "no-geobench"),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "TMPDIR": str(root / "tmp"),
        }

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert REPO_ROOT not in root.parents
    for folder in ("dist", "work", "home", "tmp"):
        (root / folder).mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    found = Installed(root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(found.venv)], check=True, timeout=120)
    install = subprocess.run(
        [*pip, "--python", str(found.python), "install", "--no-deps", "--no-index", str(found.wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    # The dependencies: this venv's site-packages, as a plain path (its own .pth files stay unread).
    site = subprocess.run(
        [str(found.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    found.site = Path(site)
    (found.site / "_bench_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return found


def test_the_wheel_carries_the_configs_and_the_sweeper(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    configs = {f"bench/conf/{p.relative_to(CONFIG_DIR).as_posix()}" for p in CONFIG_DIR.rglob("*.yaml")}
    assert len(configs) > 50 and configs <= names, sorted(configs - names)
    assert {
        "bench/conf/__init__.py",
        "bench/conf/config.yaml",
        "bench/report/geobench2_groups.json",
        "hydra_plugins/bench_sweeper/__init__.py",
        "hydra_plugins/bench_sweeper/sweeper.py",
    } <= names
    # hydra_plugins is a namespace package shared with Hydra's own plugins.
    assert "hydra_plugins/__init__.py" not in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "src/"))]
    metadata = zipfile.ZipFile(installed.wheel).read("bench-0.1.0.dist-info/METADATA").decode()
    floor = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"Requires-Python: {floor}" in metadata


def test_the_installed_bench_is_the_wheels_not_the_checkouts(installed):
    probe = installed.run(
        installed.python,
        "-c",
        "import sys, json, bench, bench.paths, hydra, hydra_plugins.bench_sweeper as sweeper\n"
        "from importlib import metadata\n"
        "from bench.tracking.environment import git_commit, package_versions\n"
        "print(json.dumps({'bench': bench.__file__, 'sweeper': sweeper.__file__, 'hydra': hydra.__file__,\n"
        "  'in_checkout': bench.paths.IN_CHECKOUT, 'commit': git_commit(), 'version': package_versions()['bench'],\n"
        "  'dist': str(metadata.distribution('bench').locate_file('')), 'path': sys.path}))",
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    venv = str(installed.venv)
    assert found["bench"].startswith(venv) and found["sweeper"].startswith(venv), found
    assert found["dist"].startswith(venv)
    assert not found["hydra"].startswith(venv)  # a dependency, from the project venv
    assert str(REPO_ROOT / "src") not in found["path"]
    # No checkout, so no commit (and no git error printed): the installed version says what ran.
    assert (found["in_checkout"], found["commit"], found["version"]) == (False, None, "0.1.0")
    assert probe.stderr == ""


def test_help_and_a_dry_run_from_another_directory(installed):
    help_ = installed.run(installed.bench, "--help", timeout=120)
    assert help_.returncode == 0, help_.stderr
    assert "== Configuration groups ==" in help_.stdout
    groups = dict(re.findall(r"^(\w+): (.+)$", help_.stdout, re.M))
    assert "synthetic_cls" in groups["task"] and "demo" in groups["experiment"] and "prithvi_tiny" in groups["model"]

    sweep = installed.root / "dry"
    dry = installed.run(
        installed.bench,
        "-m",
        "task=synthetic_seg,synthetic_cls",
        "model=prithvi_tiny",
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={sweep}",
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Dry run: nothing launched." in dry.stdout and "2 cell(s): 16 tuning trials" in dry.stdout
    assert re.findall(r"^cell task=(\w+)", dry.stdout, re.M) == ["synthetic_seg", "synthetic_cls"]
    assert not sweep.exists()


def test_a_users_config_folder_adds_tasks_and_converted_benchmarks(installed):
    """The user's folder, passed with --config-dir: a task of their own on bench's task_defaults, and
    a terratorch-iterate benchmark converted by the installed bench.convert (into ./bench_conf, never
    into the installed package), whose cell is the catalog's task."""
    into_package = installed.run(
        installed.python, "-m", "bench.convert", ITERATE / "quick_test.yaml", "--out", installed.site / "bench" / "conf"
    )
    assert into_package.returncode != 0 and "is inside bench's package" in into_package.stderr
    convert = installed.run(installed.python, "-m", "bench.convert", ITERATE / "quick_test.yaml")
    assert convert.returncode == 0, convert.stderr
    folder = installed.work / "bench_conf"
    assert convert.stdout.strip().splitlines()[-1] == f"python -m bench --config-dir {folder} -m experiment=quick_test"
    assert (folder / "experiment" / "quick_test.yaml").is_file()
    (folder / "task").mkdir(exist_ok=True)
    (folder / "task" / "my_cls.yaml").write_text(
        "defaults:\n  - /task/synthetic_cls@_here_\n  - _self_\n\nname: my_cls\nmax_epochs: 3\n"
    )
    job = installed.run(installed.bench, "--config-dir", "bench_conf", "--cfg", "job", "--resolve", "task=my_cls")
    assert job.returncode == 0, job.stderr[-3000:]
    assert "name: my_cls" in job.stdout and "max_epochs: 3" in job.stdout
    sweep = installed.root / "converted"
    dry = installed.run(
        installed.bench,
        "--config-dir",
        "bench_conf",
        "-m",
        "experiment=quick_test",
        "hydra.sweeper.dry_run=true",
        f"hydra.sweep.dir={sweep}",
        timeout=120,
    )
    assert "Dry run: nothing launched." in dry.stdout, dry.stderr[-3000:]
    assert re.findall(r"^cell task=(\w+)", dry.stdout, re.M) == ["neontree"]
    assert not list((installed.venv / "lib").rglob("quick_test*"))


@pytest.mark.slow
def test_a_one_trial_synthetic_sweep(installed):
    sweep = installed.root / "sweep"
    before = sorted(p for p in (installed.venv / "lib").rglob("*") if "__pycache__" not in p.parts)
    result = installed.run(
        installed.bench,
        "-m",
        "task=synthetic_cls",
        "model=prithvi_tiny",
        "model.model_args.backbone_pretrained=false",
        "task.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={sweep}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["state"] == "COMPLETE" and rows[0]["task"] == "synthetic_cls", rows
    # The data and the MLflow store went where this user's settings say: nothing into the package.
    assert (installed.root / "data" / "synthetic_cls_v1").is_dir()
    assert (installed.work / "multirun_outputs" / "mlflow.db").is_file()
    after = sorted(p for p in (installed.venv / "lib").rglob("*") if "__pycache__" not in p.parts)
    assert after == before


def test_one_python_floor_stated_everywhere_and_tested():
    """requires-python, ruff's target-version and mypy's python_version name the same floor (the
    code uses ExceptionGroup, 3.11), the docs state it, and the suite runs on it: CI's interpreter is
    the floor itself, so an API or syntax newer than the floor fails here first."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    match = re.fullmatch(r">=(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert match, pyproject["project"]["requires-python"]
    floor = (int(match[1]), int(match[2]))
    assert floor >= (3, 11)  # ExceptionGroup, tomllib
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{floor[0]}{floor[1]}"
    assert pyproject["tool"]["mypy"]["python_version"] == f"{floor[0]}.{floor[1]}"
    assert f"Python {floor[0]}.{floor[1]}" in (REPO_ROOT / "docs" / "getting-started.md").read_text()
    assert sys.version_info[:2] >= floor
    if sys.version_info[:2] != floor:
        message = f"the suite runs on Python {sys.version_info[0]}.{sys.version_info[1]}, not the floor {floor}"
        if os.environ.get("BENCH_REQUIRE_CLUSTERS") == "1":  # CI (.ci/run): the floor is what it tests
            pytest.fail(message)
        pytest.skip(message)
