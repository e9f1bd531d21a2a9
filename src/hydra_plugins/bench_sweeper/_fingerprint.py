"""What makes a cell's study one experiment: its fingerprint, and how two fingerprints differ.

A resumed sweep compares each cell's stored fingerprint with the one it would start now, so a
changed metric, search space, sampler or config never slips into an existing study unnoticed.
The config part is the cell's resolved config minus what may change without changing the result:
Hydra's own node, the trial node, the searched keys and the search-space node (they are in the
search-space part), keys the
app lists in hydra.sweeper.ignore_on_resume (tracking, launcher resources, ...) and absolute
paths (the same data can live elsewhere on another machine). Secrets are masked before storing.
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

from ._cells import Cell, flatten
from ._masking import mask_data, resolved_container


def fingerprint(
    cell: Cell,
    cell_cfg: DictConfig,
    sampler_cfg: Any,
    ignore: list[str],
    trial_key: str,
    search_space_key: str | None = None,
    folds: int | None = None,
) -> dict[str, Any]:
    from optuna.distributions import distribution_to_json

    space = {key: json.loads(distribution_to_json(dist)) for key, dist in cell.distributions.items()}
    space.update({key: {"fixed": value} for key, value in cell.fixed.items()})
    # The search-space node is in the search-space part already, as parsed.
    skipped = ["hydra", trial_key, search_space_key or "", *ignore, *cell.distributions, *cell.fixed]
    fingerprint: dict[str, Any] = mask_data(
        {
            "metric": cell.metric,
            "direction": cell.direction,
            "search_space": space,
            "sampler": resolved_container(sampler_cfg),
            # Dotted keys, lists as values; what cannot be resolved outside a job keeps its text.
            "config": {
                k: v
                for k, v in flatten(resolved_container(cell_cfg)).items()
                if not _under(k, skipped) and not _is_path(v)
            },
        }
    )
    if folds:  # k-fold tuning scores every trial another way (absent: one split, as before it existed)
        fingerprint["folds"] = folds
    return fingerprint


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences, e.g. "task.max_epochs: 10 -> 5"."""
    out = []
    for part in ("metric", "direction", "sampler", "folds"):
        if old.get(part) != new.get(part):
            out.append(f"{part}: {_short(old.get(part))} -> {_short(new.get(part))}")
    for part, label in (("search_space", "search space "), ("config", "")):
        before, after = old.get(part) or {}, new.get(part) or {}
        for key in sorted(set(before) | set(after)):
            if before.get(key, _ABSENT_TEXT) != after.get(key, _ABSENT_TEXT):
                out.append(
                    f"{label}{key}: {_short(before.get(key, _ABSENT_TEXT))} -> {_short(after.get(key, _ABSENT_TEXT))}"
                )
    return out


_ABSENT_TEXT = "(absent)"


def _under(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes if p)


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("/", "~", "file:"))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
