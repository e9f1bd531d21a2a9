"""The catalog's composed configs, pinned byte for byte: a refactor of conf/ (defaults lists, shared
files such as conf/model_defaults/ and conf/task_defaults/) must leave every one of them unchanged.

For each combination of options below, the config `python -m bench <overrides>` would run is composed
with Hydra's compose API (in one initialize_config_dir context; output_dir and data_dir fixed, and the
environment variables conf/ reads through oc.env fixed) and written as YAML twice: as composed, with
its `${...}` interpolations as text (what a job's saved config holds), and resolved (what the job runs
on); Hydra's own `hydra:` node is not part of it. tests/data/catalog_configs.json holds the sha256 of
each. Composition only, no data and no torch: about 45 s of CPU for the ~220 combinations.

The combinations: every task with the default model; every model with one task of each kind (each
task type, and a multi-temporal task); every model's other segmentation heads (model.head=...); every
experiment preset's cells; every option of the other groups once.

A config changed on purpose changes some hashes. Check that the combinations the test names are the
ones you meant to change (--show prints one as composed: run it before and after the change and diff),
then regenerate the snapshot and commit it with the change:

    .venv/bin/python -m tests.test_catalog_identity --write
    .venv/bin/python -m tests.test_catalog_identity --show model=prithvi task=eurosat [--resolve]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import bench  # noqa: F401  (registers the resolvers conf/ uses)
from bench.paths import CONFIG_DIR

pytestmark = pytest.mark.duration(60)

SNAPSHOT = Path(__file__).parent / "data" / "catalog_configs.json"
# Fixed where a run would take its own: Hydra's job dir and the data root.
FIXED = ("output_dir=/bench/output", "data_dir=/bench/data")
# Groups whose every option is composed once, next to the default model and task.
OTHER_GROUPS = ("search_space", "protocol", "pruning", "launcher")
TASK_KINDS = (
    "classification",
    "multilabel_classification",
    "segmentation",
    "regression",
    "object_detection",
    "instance_segmentation",
    "time_series",
)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@contextlib.contextmanager
def _fixed_environment() -> Iterator[None]:
    """The variables conf/ reads (oc.env) set to fixed values, so a resolved config is the same on
    every machine: HOME a fixed path, every other one unset (its fallback applies)."""
    names = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        names.update(re.findall(r"oc\.env:([A-Za-z0-9_]+)", path.read_text()))
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in names:
            os.environ.pop(name, None)
        os.environ["HOME"] = "/home/bench"
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kinds(cfg: DictConfig) -> list[str]:
    """A task's type, and time_series for a multi-temporal one."""
    return [str(cfg.task.type)] + (["time_series"] if int(cfg.task.get("num_frames") or 1) > 1 else [])


def _texts(cfg: DictConfig) -> tuple[str, str]:
    """The config as composed (interpolations as text) and resolved."""
    try:
        resolved = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as error:  # noqa: BLE001  (a config that cannot resolve is pinned as such)
        resolved = f"unresolvable: {type(error).__name__}: {error}"
    return OmegaConf.to_yaml(cfg), resolved


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def composed_catalog() -> dict[str, tuple[str, str]]:
    """'overrides' -> (composed YAML, resolved YAML), for every combination the docstring lists."""
    out: dict[str, tuple[str, str]] = {}
    with _fixed_environment(), initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):

        def add(*overrides: str) -> DictConfig:
            cfg = compose("config", overrides=[*FIXED, *overrides])
            out.setdefault(" ".join(overrides), _texts(cfg))
            return cfg

        # Every task with the default model. The first task (by name) of each type stands for it, and one
        # multi-temporal task for time series (one of those already chosen if it is one: fewer compositions).
        kinds = {task: _kinds(add(f"task={task}")) for task in _options("task")}
        first_of_kind: dict[str, str] = {}
        for task, of_task in kinds.items():
            first_of_kind.setdefault(of_task[0], task)
        chosen = [task for task in first_of_kind.values() if "time_series" in kinds[task]]
        first_of_kind["time_series"] = next(iter(chosen), None) or next(
            (task for task, of_task in kinds.items() if "time_series" in of_task), None
        )
        missing = [kind for kind in TASK_KINDS if first_of_kind.get(kind) is None]
        assert not missing, f"no catalog task of kind {missing}: TASK_KINDS lists kinds the catalog has"
        representatives = sorted(set(first_of_kind.values()))
        # Every model with one task of each kind, and with each of its segmentation heads.
        for model in _options("model"):
            cfg = [add(f"model={model}", f"task={task}") for task in representatives][0]
            for head in OmegaConf.select(cfg, "model.heads") or {}:
                if head != cfg.model.head:
                    add(f"model={model}", f"task={first_of_kind['segmentation']}", f"model.head={head}")
        # Every experiment preset's cells (the models its cells list).
        for experiment in _options("experiment"):
            add(f"experiment={experiment}")
            overrides = [*FIXED, f"experiment={experiment}"]
            cells = compose("config", overrides=overrides, return_hydra_config=True).hydra.sweeper.cells
            for model in cells.model:
                for task in cells.task:
                    add(f"experiment={experiment}", f"model={model}", f"task={task}")
        for group in OTHER_GROUPS:
            for option in _options(group):
                add(f"{group}={option}")
    return out


def hashes() -> dict[str, dict[str, str]]:
    return {
        key: {"composed": _sha(composed), "resolved": _sha(resolved)}
        for key, (composed, resolved) in composed_catalog().items()
    }


def test_every_catalog_config_composes_as_snapshotted():
    expected = json.loads(SNAPSHOT.read_text())
    actual = hashes()
    changed = [
        f"{key} ({', '.join(form for form in ('composed', 'resolved') if actual[key][form] != expected[key][form])})"
        for key in actual
        if key in expected and actual[key] != expected[key]
    ]
    new = sorted(set(actual) - set(expected))
    gone = sorted(set(expected) - set(actual))
    assert not (changed or new or gone), (
        f"{len(changed)} composed configs changed, {len(new)} new, {len(gone)} gone"
        + "".join(f"\n  changed: {line}" for line in changed[:40])
        + "".join(f"\n  new: {key}" for key in new[:20])
        + "".join(f"\n  gone: {key}" for key in gone[:20])
        + "\nIf meant, regenerate: .venv/bin/python -m tests.test_catalog_identity --write"
        + " (see one with --show <overrides>)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.test_catalog_identity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate tests/data/catalog_configs.json")
    parser.add_argument("--show", nargs="+", metavar="OVERRIDE", help="print one combination's composed config")
    parser.add_argument("--resolve", action="store_true", help="with --show: the resolved config")
    args = parser.parse_args(argv)
    if args.show:
        with _fixed_environment(), initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed, resolved = _texts(compose("config", overrides=[*FIXED, *args.show]))
        sys.stdout.write(resolved if args.resolve else composed)
        return 0
    if args.write:
        SNAPSHOT.write_text(json.dumps(hashes(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
