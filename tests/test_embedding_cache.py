"""The probes' embedding cache (bench.probes.cache): content-addressed entries written then renamed, built once
by concurrent processes (an flock'ed lock file), rebuilt when written by another features version, the
refusals before anything is computed, and `python -m bench.cache ls|rm`."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from bench.cache import main as cache_cli
from bench.errors import ConfigError
from bench.probes import check_cache_dir, check_probe
from bench.probes.cache import FEATURES_VERSION, entry_key, get_or_build, lookup
from tests.helpers import wait_for

pytestmark = pytest.mark.duration(15)

INPUTS = {"describe": "model=m task=t split=train", "model": "m", "task": "t", "split": "train"}


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(12, dtype=np.float32).reshape(4, 3), np.array([0, 1, 0, 1])


def test_the_key_changes_with_any_input():
    key = entry_key(INPUTS)
    assert key == entry_key(dict(reversed(list(INPUTS.items()))))  # order does not matter
    for field, other in [("model", "m2"), ("split", "val"), ("task", "t2")]:
        assert entry_key({**INPUTS, field: other}) != key
    assert entry_key({**INPUTS, "files": {"root": ["/d", "abc"]}}) != entry_key(
        {**INPUTS, "files": {"root": ["/d", "abd"]}}
    )


def test_a_second_call_hits_the_entry(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _arrays()

    first = get_or_build(tmp_path, "k1", INPUTS, build)
    second = get_or_build(tmp_path, "k1", INPUTS, build)
    assert (first.built, second.built, len(calls)) == (True, False, 1)
    features, labels = second.arrays()
    assert features.shape == (4, 3) and labels.tolist() == [0, 1, 0, 1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # written, then renamed
    meta = json.loads((tmp_path / "k1" / "meta.json").read_text())
    assert meta["features_version"] == FEATURES_VERSION and meta["split"] == "train"


def test_an_entry_of_another_features_version_is_rebuilt(tmp_path, caplog):
    get_or_build(tmp_path, "k1", INPUTS, _arrays)
    meta_path = tmp_path / "k1" / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "features_version": FEATURES_VERSION - 1}))
    calls = []

    def build():
        calls.append(1)
        return _arrays()

    with caplog.at_level("WARNING"):
        entry = get_or_build(tmp_path, "k1", INPUTS, build)
    assert entry.built and calls == [1]
    assert f"written by features version {FEATURES_VERSION - 1}" in caplog.text and "rebuilt" in caplog.text
    assert json.loads(meta_path.read_text())["features_version"] == FEATURES_VERSION


def test_a_damaged_entry_is_rebuilt(tmp_path):
    get_or_build(tmp_path, "k1", INPUTS, _arrays)
    (tmp_path / "k1" / "features.npy").unlink()
    assert lookup(tmp_path, "k1") is None
    assert get_or_build(tmp_path, "k1", INPUTS, _arrays).built


def _contend(cache: str, barrier, builds: str, results) -> None:
    arrived = Path(builds).with_name("arrived.txt")

    def build():
        with open(builds, "a") as f:
            f.write(f"{os.getpid()}\n")
        # The builder finishes only once the other process has reached get_or_build too, so that one
        # is certainly contending for the entry while it is built: it must wait on the lock, not build.
        wait_for(lambda: len(arrived.read_text().splitlines()) == 2, 30, "the other process at the entry")
        return _arrays()

    barrier.wait()
    with open(arrived, "a") as f:
        f.write(f"{os.getpid()}\n")
    entry = get_or_build(Path(cache), "shared", INPUTS, build)
    results.put(entry.built)


def test_two_processes_build_one_entry_once(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    builds = tmp_path / "builds.txt"
    cache = tmp_path / "cache"
    workers = [context.Process(target=_contend, args=(str(cache), barrier, str(builds), results)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in range(2)) == [False, True]  # one built, one read it
    assert len(builds.read_text().splitlines()) == 1
    assert lookup(cache, "shared") is not None


def test_an_unwritable_cache_dir_is_refused(tmp_path):
    """A folder this user cannot write. Root can write every folder, so as root (CI) the check runs
    in a forked child that has dropped to nobody (uid 65534), on a folder outside the private tmp_path."""
    import shutil
    import tempfile

    check_cache_dir(tmp_path / "new" / "embeddings")  # a folder to be created under a writable one
    base = Path(tempfile.mkdtemp(prefix="bench-cache-test-"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        if os.geteuid() != 0:
            with pytest.raises(ConfigError, match="is not writable"):
                check_cache_dir(locked / "embeddings")
            return
        pid = os.fork()
        if pid == 0:  # the child: nobody, and the check's verdict as its exit code
            code = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                check_cache_dir(locked / "embeddings")
                code = 1  # accepted: wrong
            except ConfigError as exc:
                code = 0 if "is not writable" in str(exc) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "an unwritable cache dir was not refused as nobody"
    finally:
        shutil.rmtree(base)


def test_a_cache_path_under_a_file_or_world_writable_as_root_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="is not writable .*is not a folder"):
        check_cache_dir(tmp_path / "a_file" / "embeddings")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    if os.geteuid() == 0:
        with pytest.raises(ConfigError, match="world-writable and bench runs as root"):
            check_cache_dir(shared)
    else:
        check_cache_dir(shared)


def test_probe_refusals_name_the_problem(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="protocol=knn cannot serve task 'synthetic_seg': it is a segmentation task"):
        check_probe(compose_cfg("task=synthetic_seg", "protocol=knn"))
    with pytest.raises(ConfigError, match="cannot serve task .* it is a regression task"):
        check_probe(compose_cfg("task=synthetic_seg", "protocol=linear_probe", "task.type=regression"))
    with pytest.raises(ConfigError, match="probe.k=0 is not possible"):
        check_probe(compose_cfg("task=synthetic_cls", "protocol=knn", "probe.k=0"))
    check_probe(compose_cfg("task=synthetic_seg", "protocol=linear_probe", f"embeddings.cache_dir={tmp_path}"))
    check_probe(compose_cfg("task=synthetic_seg"))  # fine-tuning: nothing to check
    (tmp_path / "a_file").write_text("")
    unwritable = f"embeddings.cache_dir={tmp_path / 'a_file' / 'embeddings'}"
    with pytest.raises(ConfigError, match="embeddings.cache_dir=.* is not writable"):  # frozen caches features too
        check_probe(compose_cfg("task=synthetic_seg", "protocol=frozen", unwritable))
    check_probe(compose_cfg("task=synthetic_seg", "protocol=frozen", unwritable, "embeddings.frozen_features=false"))


def test_the_protocols_label_the_cell(compose_cfg):
    assert compose_cfg("task=synthetic_cls", "protocol=knn").task.finetuning == "knn"
    assert compose_cfg("task=synthetic_cls", "protocol=linear_probe").task.finetuning == "linear_probe"
    assert compose_cfg("task=synthetic_cls", "protocol=frozen").task.finetuning == "frozen"
    assert compose_cfg("task=synthetic_cls").task.finetuning == "full_ft"
    assert set(compose_cfg("protocol=knn").search_space) == {"probe.k", "probe.distance"}


def test_cache_ls_and_rm(tmp_path, capsys):
    get_or_build(tmp_path, entry_key(INPUTS), INPUTS, _arrays)
    other = {**INPUTS, "split": "val"}
    get_or_build(tmp_path, entry_key(other), other, _arrays)
    (tmp_path / "outside").write_text("not an entry")
    assert cache_cli(["--dir", str(tmp_path), "ls"]) == 0
    listing = capsys.readouterr().out
    assert entry_key(INPUTS) in listing and entry_key(other) in listing and " val " in listing
    assert cache_cli(["--dir", str(tmp_path), "rm", entry_key(INPUTS)]) == 0
    assert not (tmp_path / entry_key(INPUTS)).exists() and (tmp_path / entry_key(other)).exists()
    assert cache_cli(["--dir", str(tmp_path), "rm", "../outside"]) == 1  # never anything outside the cache
    assert cache_cli(["--dir", str(tmp_path), "rm", "--all"]) == 0
    assert not (tmp_path / entry_key(other)).exists() and (tmp_path / "outside").exists()


def test_bench_cache_is_a_subcommand_of_the_bench_command(tmp_path):
    """`bench cache ls|rm` (here `python -m bench cache`, the main() the console script runs): the cache
    commands, in the driver's environment ($BENCH_CACHE_DIR), with no torch import and no Hydra run."""
    import subprocess
    import sys

    get_or_build(tmp_path, entry_key(INPUTS), INPUTS, _arrays)
    env = {**os.environ, "BENCH_CACHE_DIR": str(tmp_path)}
    listed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bench", "cache", "ls"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert entry_key(INPUTS) in listed.stdout and " train " in listed.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in listed.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "bench.cache" in imported
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun_outputs").exists()  # no Hydra run
    removed = subprocess.run(
        [sys.executable, "-m", "bench", "cache", "rm", entry_key(INPUTS)], env=env, capture_output=True, text=True
    )
    assert removed.returncode == 0 and f"removed {entry_key(INPUTS)}" in removed.stdout, removed.stderr
    assert not (tmp_path / entry_key(INPUTS)).exists()
