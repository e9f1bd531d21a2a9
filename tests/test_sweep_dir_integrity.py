"""A sweep dir never silently starts over (hydra_plugins.bench_sweeper._integrity): a finished
sweep, damaged the ways a person or a crash damages one, then the same command again. Each is
refused with a sentence that names what is missing, and its tables keep every row; only a journal
whose last record was cut mid-write is repaired, as Optuna's format allows, and the sweep goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import read_csv, run_stub

pytestmark = pytest.mark.duration(15)

ARGS = ["task=a,b", "hydra.sweeper.n_trials=2", "hydra.sweeper.repeats=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("finished") / "sweep"
    result = run_stub(sweep, *ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(read_csv(sweep / "results.csv")) == 4 and len(read_csv(sweep / "repeats.csv")) == 4
    return sweep


def _cut_last_record(sweep: Path) -> None:
    journal = sweep / "optuna.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-20])  # the last line loses its end and its newline


def _damage_line_3(sweep: Path) -> None:
    journal = sweep / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"{not json\n"] + lines[2:]))


DAMAGE = {
    "sweep.json removed": (
        lambda s: (s / "sweep.json").unlink(),
        "holds results.csv (4 rows), repeats.csv (4 rows), best.csv, optuna.journal and 8 job dirs but no sweep.json",
    ),
    "optuna.journal removed": (lambda s: (s / "optuna.journal").unlink(), "optuna.journal is missing"),
    "sweep.json of another sweep": (
        lambda s: (s / "sweep.json").write_text('{"sweep_id": "0123456789ab"}'),
        "that the storage does not hold for sweep 0123456789ab",
    ),
    "empty sweep.json": (lambda s: (s / "sweep.json").write_text(""), "sweep.json is damaged (empty)"),
    "garbage sweep.json": (lambda s: (s / "sweep.json").write_bytes(b"\x00\xffnot json"), "sweep.json is damaged"),
    "journal damaged mid-file": (_damage_line_3, "optuna.journal is damaged at line 3"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_sweep_dir_is_refused_and_keeps_every_row(damage, finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep)
    harm, words = DAMAGE[damage]
    harm(sweep)
    before = {name: (sweep / name).read_bytes() for name in ("results.csv", "repeats.csv")}
    for dry in (True, False):
        result = run_stub(sweep, *ARGS, *(["hydra.sweeper.dry_run=true"] if dry else []))
        assert result.returncode != 0, (damage, result.stdout[-2000:])
        assert words in result.stderr, (damage, result.stderr[-2000:])
        assert {name: (sweep / name).read_bytes() for name in before} == before  # nothing rewritten


def test_the_restore_hint_names_the_sweep_id_its_journal_holds(finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep)
    sweep_id = json.loads((sweep / "sweep.json").read_text())["sweep_id"]
    (sweep / "sweep.json").unlink()
    result = run_stub(sweep, *ARGS)
    assert f'write {{"sweep_id": "{sweep_id}"}} to {sweep / "sweep.json"}' in result.stderr
    (sweep / "sweep.json").write_text(json.dumps({"sweep_id": sweep_id}))  # as the sentence says
    again = run_stub(sweep, *ARGS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(read_csv(sweep / "results.csv")) == 4 and len(read_csv(sweep / "repeats.csv")) == 4


def test_a_journal_cut_mid_write_drops_its_last_record_says_so_and_goes_on(finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep)
    _cut_last_record(sweep)
    dry = run_stub(sweep, *ARGS, "hydra.sweeper.dry_run=true")  # says so, changes nothing
    assert dry.returncode == 0 and "its last record is incomplete" in dry.stdout + dry.stderr
    result = run_stub(sweep, *ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "its last record was incomplete (a crash while it was written): dropped" in result.stdout
    assert list(sweep.glob("optuna.journal.incomplete-*"))  # its bytes, kept
    assert len(read_csv(sweep / "results.csv")) == 4
    assert {r["state"] for r in read_csv(sweep / "repeats.csv")} >= {"COMPLETE"}


def test_a_table_is_never_cut_to_fewer_rows_than_it_held(tmp_path):
    from hydra_plugins.bench_sweeper import _results

    path = tmp_path / "results.csv"
    path.write_text("study,trial\n" + "".join(f"s,{i}\n" for i in range(5)))
    _results._write_csv(str(path), [{"study": "s", "trial": 0}], ["study", "trial"])
    (kept,) = tmp_path.glob("results.csv.kept-*")
    assert len(read_csv(kept)) == 5 and len(read_csv(path)) == 1
    _results._write_csv(str(path), [{"study": "s", "trial": 0}, {"study": "s", "trial": 1}], ["study", "trial"])
    assert len(list(tmp_path.glob("results.csv.kept-*"))) == 1  # it grows from its own first write on
