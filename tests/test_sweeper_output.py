"""The sweeper's own output helpers: files written whole or not at all, and tables that read as text
in a log."""

from __future__ import annotations

import pytest

from hydra_plugins.bench_sweeper._console import table_text
from hydra_plugins.bench_sweeper._files import atomic_write


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / "results.csv"
    with atomic_write(path) as f:
        f.write("a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"

    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("a,b\n")
        raise RuntimeError("the driver died mid-write")
    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left


def test_a_table_in_a_log_is_plain_aligned_text():
    long_params = "lr=0.001 " * 30
    text = table_text(["cell", "best", "params"], [["task=a", 0.123456, long_params], ["task=bb", float("nan"), ""]])
    lines = text.splitlines()
    assert lines[0].split() == ["cell", "best", "params"]
    assert set(lines[1]) <= {"─", " "}  # a rule under the headers, no box
    assert lines[2].split()[:2] == ["task=a", "0.1235"] and long_params.strip() in lines[2]  # not wrapped
    assert lines[3].split() == ["task=bb", "nan"]
    assert lines[2].index("0.1235") == lines[3].index("nan") == lines[0].index("best")  # aligned columns
    assert all(line == line.rstrip() for line in lines)
