"""A sweep dir never silently starts over: what it holds must agree with its identity and storage.

A sweep dir's results (results.csv, repeats.csv, job dirs) come from the studies of one sweep id
(sweep.json) in one storage (by default optuna.journal beside them). If sweep.json or the journal
is gone, damaged or from another sweep, a driver would start a new sweep there and rewrite the
tables without the earlier rows. So, before anything is created or launched:
  - a dir that holds results but no sweep.json, a damaged sweep.json, or a journal file that is
    missing while results exist, or holds a damaged record before its end, is refused with what is
    missing and how to go on (the dry run says the same);
and once the storage is open (it may be a database the plan cannot read without creating tables):
  - every study the tables name must be one of this sweep's studies in the storage.
A journal whose last record was cut (a crash mid-write) is the one damage Optuna's format allows:
that record is dropped (its bytes kept beside the journal) and the console says so.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from ._errors import SweepConfigError

log = logging.getLogger(__name__)

IDENTITY = "sweep.json"
TABLES = ("results.csv", "repeats.csv")
_SWEEP_ID_IN_JOURNAL = re.compile(r'"study_name"\s*:\s*"[^"]*@([0-9a-f]{12})(?:/|")')


class SweepDirError(SweepConfigError):
    """The sweep dir's results, identity and storage do not agree: continuing would lose rows."""


def produced(path: Path) -> list[str]:
    """What a sweep left in the dir: its tables, its journal, its numbered job dirs."""
    found = [
        f"{name} ({n} rows)" if (n := table_rows(path / name)) is not None else name
        for name in (*TABLES, "best.csv", "optuna.journal")
        if (path / name).is_file()
    ]
    jobs = sum(1 for p in path.iterdir() if p.is_dir() and p.name.isdigit()) if path.is_dir() else 0
    return found + ([f"{jobs} job dir{'s' if jobs > 1 else ''}"] if jobs else [])


def listing(items: list[str]) -> str:
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def table_rows(path: Path) -> int | None:
    """Data rows of a CSV table (None for another file); a damaged one counts what can be read."""
    if path.name not in TABLES:
        return None
    try:
        with open(path, newline="", errors="replace") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except (OSError, csv.Error):
        return 0


def read_identity(path: Path) -> dict[str, Any]:
    """sweep.json ({} when there is none); a damaged one is refused, naming it. Reads only."""
    file = Path(path) / IDENTITY
    try:
        text = file.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SweepDirError(f"{file} cannot be read ({exc.strerror}). {_restore_hint(Path(path))}") from None
    try:
        identity = json.loads(text)
    except ValueError:
        identity = None
    if not isinstance(identity, dict) or not isinstance(identity.get("sweep_id"), str) or not identity["sweep_id"]:
        shown = repr(text[:60]) if text.strip() else "empty"
        raise SweepDirError(
            f"{file} is damaged ({shown}): it should be JSON naming the sweep id whose studies this "
            f"dir holds. {_restore_hint(Path(path))}"
        )
    return identity


def check_dir(path: Path, storage_location: str, dry_run: bool = False) -> None:
    """Refuse a dir whose results have lost their identity or storage; check a journal file."""
    path = Path(path)
    if not path.is_dir():
        return
    identity = read_identity(path)
    # What the dir holds is listed only for a sentence: counting the tables' rows reads them whole.
    if not identity and (left := produced(path)):
        raise SweepDirError(
            f"{path} holds {listing(left)} but no {IDENTITY}, which names the sweep they belong "
            f"to: starting there would begin a new sweep and rewrite its tables without those rows. "
            f"{_restore_hint(path)}"
        )
    if identity:
        check_tables_match(path, None, identity["sweep_id"])
    if "://" in storage_location:
        return
    journal = Path(storage_location)
    if journal.is_file():
        check_journal(journal, repair=not dry_run)
    elif identity and any(table_rows(path / name) for name in TABLES if (path / name).is_file()):
        raise SweepDirError(
            f"{path} holds {listing(produced(path))} of sweep {identity['sweep_id']}, but its storage "
            f"{journal} is missing: it holds the studies those rows came from, and a new one would "
            "start the sweep over. Restore it (from a backup), or use a new hydra.sweep.dir."
        )


def check_journal(journal: Path, repair: bool) -> None:
    """Every record of the journal a JSON line; a last line cut mid-write is dropped (repair) or
    announced (a dry run changes nothing)."""
    data = journal.read_bytes()
    end = data.rfind(b"\n") + 1
    for number, line in enumerate(data[:end].splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError:
            raise SweepDirError(
                f"{journal} is damaged at line {number} (not a JSON record: {line[:60]!r}); the "
                "records after it cannot be trusted. Restore it from a backup, or use a new "
                "hydra.sweep.dir."
            ) from None
    if end == len(data):
        return
    if not repair:
        log.warning(
            "%s: its last record is incomplete (%d bytes: a crash while it was written); a run drops it",
            journal,
            len(data) - end,
        )
        return
    kept = journal.with_name(f"{journal.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
    kept.write_bytes(data[end:])
    with open(journal, "r+b") as f:
        f.truncate(end)
    print(
        f"{journal}: its last record was incomplete (a crash while it was written): dropped, as Optuna's "
        f"journal format allows; its {len(data) - end} bytes are kept in {kept.name}"
    )


def check_tables_match(path: Path, known_studies: set[str] | None, sweep_id: str) -> None:
    """The studies the tables name are this sweep's (their names end in @<sweep id>), and, once the
    storage is open, in it (known_studies): else the storage or the identity was replaced, and
    rewriting the tables would drop their rows."""
    named: dict[str, str] = {}
    for name in TABLES:
        file = path / name
        if not file.is_file():
            continue
        try:
            with open(file, newline="", errors="replace") as f:
                for row in csv.DictReader(f):
                    if row.get("study"):
                        named.setdefault(row["study"], name)
        except (OSError, csv.Error):
            continue  # a damaged table is rebuilt from the storage, its old copy kept (_results.py)
    ours = {name for name in named if re.search(rf"@{re.escape(sweep_id)}(/|$)", name)}
    missing = sorted(set(named) - (ours if known_studies is None else ours & known_studies))
    if missing:
        raise SweepDirError(
            f"{path / named[missing[0]]} lists trials of {len(missing)} stud{'y' if len(missing) == 1 else 'ies'} "
            f"(e.g. {missing[0]}) that the storage does not hold for sweep {sweep_id} ({IDENTITY}): the storage or "
            f"{IDENTITY} was replaced, and continuing would rewrite the tables without those rows. Restore them, or "
            "use a new hydra.sweep.dir."
        )


def _restore_hint(path: Path) -> str:
    ids = _journal_sweep_ids(path / "optuna.journal")
    if len(ids) == 1:
        return (
            f"Its journal holds the studies of sweep {ids[0]}: to continue it, write "
            f'{{"sweep_id": "{ids[0]}"}} to {path / IDENTITY}; or use a new hydra.sweep.dir.'
        )
    return f"Restore {IDENTITY} (from a backup) to continue this sweep, or use a new hydra.sweep.dir."


def _journal_sweep_ids(journal: Path) -> list[str]:
    try:
        return sorted(set(_SWEEP_ID_IN_JOURNAL.findall(journal.read_text(errors="replace"))))
    except OSError:
        return []


def keep_before_shrinking(path: str, new_rows: int, written: dict[str, int]) -> None:
    """A table about to hold fewer rows than the file this process found is never cut: the old
    file is kept beside it (results.csv.kept-<time>) and the console says so. Checked once per
    file and process: after its own first write, a driver's tables only grow."""
    if path in written:
        return
    old = table_rows(Path(path)) if os.path.isfile(path) else None
    if old is not None and old > new_rows:
        kept = f"{path}.kept-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, kept)
        print(f"{path} held {old} rows and would now hold {new_rows}: the old file is kept as {os.path.basename(kept)}")
