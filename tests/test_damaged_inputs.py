"""The adversarial cases, table-driven: each damaged or odd input gets one sentence naming the file
or key, a non-zero exit and no traceback, and nothing is created where it is checked before the
sweep dir. (Damaged sweep dirs: tests/test_sweep_dir_integrity.py; stores: test_tracking_store.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.duration(30)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search_space(root: Path, name: str, text: str) -> list[str]:
    folder = root / "spaces" / "search_space"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return [f"hydra.searchpath=[file://{root / 'spaces'}]", f"search_space={name}"]


SWEEPS = {
    "a search space that is a list": (
        lambda root: _search_space(root, "listy", "- hparams.lr\n- 0.1\n"),
        "search_space must map config keys to search domains",
    ),
    "a fixed impossible value in a search space": (
        lambda root: _search_space(
            root, "fixedbad", "hparams.batch_size: 0\nhparams.lr: tag(log, interval(1e-5, 1e-3))\n"
        ),
        "the search space gives hparams.batch_size the value 0 (fixed), which no trial can use",
    ),
    "a tracking server that does not answer": (
        lambda root: [f"mlflow.tracking_uri=http://127.0.0.1:{_closed_port()}"],
        "cannot be reached",
    ),
    "evaluate_test in a sweep": (lambda root: ["evaluate_test=true"], "evaluate_test=true in a sweep"),
}


@pytest.mark.parametrize("case", sorted(SWEEPS))
def test_a_sweep_with_bad_input_is_refused_before_anything_is_created(case, run_cli, tmp_path):
    arguments, words = SWEEPS[case]
    sweep = tmp_path / "sweep"
    for dry in (True, False):
        result = run_cli(
            "-m", f"hydra.sweep.dir={sweep}", *arguments(tmp_path), *(["hydra.sweeper.dry_run=true"] if dry else [])
        )
        assert result.returncode != 0, (case, result.stdout[-1500:])
        assert words in result.stderr, (case, result.stderr[-1500:])
        assert "Traceback" not in result.stderr
        assert not sweep.exists() and not (tmp_path / "multirun_outputs").exists()


# ---- bench.report -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A small finished stub sweep with repeats: what bench.report reads."""
    from tests.helpers import run_stub

    directory = tmp_path_factory.mktemp("report") / "sweep"
    result = run_stub(directory, "task=a,b", "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=2")
    assert result.returncode == 0, result.stderr[-2000:]
    return directory


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _report(capsys, *args: str) -> Ran:
    """`python -m bench.report ...` in this process (its import costs seconds per run): the exit code
    and what it printed. An exception other than the sentence's SystemExit fails the test."""
    from bench.report.build import main

    capsys.readouterr()
    try:
        main([*args, "--bootstrap", "20"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=__import__("sys").stderr)
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def _drop_column(path: Path, column: str) -> None:
    import csv

    rows = list(csv.DictReader(path.open()))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != column])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != column} for r in rows)


REPORTS = {
    "a repeats.csv missing a column": (
        lambda s, t: _drop_column(s / "repeats.csv", "test_value"),
        "repeats.csv lacks the column(s) test_value",
    ),
    "an empty repeats.csv": (lambda s, t: (s / "repeats.csv").write_bytes(b""), "repeats.csv is empty"),
    "a binary repeats.csv": (
        lambda s, t: (s / "repeats.csv").write_bytes(b"\x00\xff\xfe" * 50),
        "repeats.csv cannot be read as CSV (it is not text)",
    ),
    "--out that is a file": (lambda s, t: (t / "taken").write_text("mine"), "is a file, not a folder"),
    "--out under a file": (lambda s, t: (t / "taken").write_text("mine"), "cannot be created: "),
    "an unwritable --out": (lambda s, t: None, "--out /sys/bench-report cannot be written"),  # root or not
    "an empty dir": (lambda s, t: None, "has neither results.csv nor repeats.csv"),
}


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_a_report_on_damaged_or_odd_input_is_a_sentence(case, sweep, tmp_path, capsys):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    harm, words = REPORTS[case]
    harm(copy, tmp_path)
    target = {
        "--out that is a file": tmp_path / "taken",
        "--out under a file": tmp_path / "taken" / "report",
        "an unwritable --out": Path("/sys/bench-report"),
    }
    source = tmp_path / "empty" if case == "an empty dir" else copy
    source.mkdir(exist_ok=True)
    out = target.get(case, tmp_path / "out")
    result = _report(capsys, str(source), "--out", str(out), "--no-mlflow")
    assert result.returncode != 0, (case, result.stdout[-1500:])
    assert words in result.stderr, (case, result.stderr[-1500:])
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # checked before the report folder is made
    if case.startswith("--out"):
        assert (tmp_path / "taken").read_text() == "mine"


def test_a_second_report_writing_to_the_same_folder_is_refused(sweep, tmp_path, capsys):
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".bench-report.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a first report holds it while it writes
    try:
        result = _report(capsys, str(sweep), "--out", str(out), "--no-mlflow")
    finally:
        os.close(fd)
    assert result.returncode != 0 and f"another bench.report is writing to {out}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".bench-report.lock"]  # it wrote nothing
    assert _report(capsys, str(sweep), "--out", str(out), "--no-mlflow").returncode == 0  # once free, it writes


def test_an_unreachable_tracking_server_is_a_warning_the_files_are_the_result(sweep, tmp_path, capsys):
    import json
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "mlflow.json").write_text(
        json.dumps({"tracking_uri": f"http://127.0.0.1:{_closed_port()}", "experiment": "x", "benchmark_run": "0" * 32})
    )
    result = _report(capsys, str(copy), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the report could not be logged to MLflow run" in result.stderr
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_report_says_its_sweep_is_still_running(sweep, tmp_path, capsys):
    import fcntl
    import os
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    fd = os.open(copy / "driver.lock", os.O_RDWR)
    os.pwrite(fd, b'{"pid": 4242, "host": "node1", "started": "now"}', 0)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a driver running the sweep holds it
    try:
        result = _report(capsys, str(copy), "--out", str(tmp_path / "out"), "--no-mlflow")
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "sweep is still running (its driver, pid 4242 on host node1, started now, holds driver.lock)" in result.stderr
    )


def test_a_report_refused_for_its_options_makes_no_folder(sweep, tmp_path):
    """The normaliser, the groups and the scores are checked before the report folder is made."""
    import subprocess
    import sys

    (tmp_path / "normalizer.json").write_text('{"elsewhere": [0, 1]}')
    result = subprocess.run(
        [sys.executable, "-m", "bench.report", str(sweep.resolve()), "--normalizer", "normalizer.json", "--no-mlflow"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "has no [min, max] for dataset(s)" in result.stderr
    assert not (sweep / "report").exists() and not (tmp_path / "report").exists()
