"""The adversarial cases, table-driven: each damaged or odd input gets one sentence naming the file
or key, a non-zero exit and no traceback, and nothing is created where it is checked before the
sweep dir. (Damaged sweep dirs: tests/test_sweep_dir_integrity.py; stores: test_tracking_store.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


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
        "search_space must map config keys to search domains"),
    "a fixed impossible value in a search space": (
        lambda root: _search_space(root, "fixedbad", "hparams.batch_size: 0\nhparams.lr: tag(log, interval(1e-5, 1e-3))\n"),
        "the search space gives hparams.batch_size the value 0 (fixed), which no trial can use"),
    "a tracking server that does not answer": (
        lambda root: [f"mlflow.tracking_uri=http://127.0.0.1:{_closed_port()}"], "cannot be reached"),
    "evaluate_test in a sweep": (lambda root: ["evaluate_test=true"], "evaluate_test=true in a sweep"),
}


@pytest.mark.parametrize("case", sorted(SWEEPS))
def test_a_sweep_with_bad_input_is_refused_before_anything_is_created(case, run_cli, tmp_path):
    arguments, words = SWEEPS[case]
    sweep = tmp_path / "sweep"
    for dry in (True, False):
        result = run_cli("-m", f"hydra.sweep.dir={sweep}", *arguments(tmp_path),
                         *(["hydra.sweeper.dry_run=true"] if dry else []))
        assert result.returncode != 0, (case, result.stdout[-1500:])
        assert words in result.stderr, (case, result.stderr[-1500:])
        assert "Traceback" not in result.stderr
        assert not sweep.exists() and not (tmp_path / "multirun_outputs").exists()
