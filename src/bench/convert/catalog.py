"""What bench's own catalog offers, read from conf/ without composing it (no Hydra, no torch):
which task wraps a TerraTorch datamodule class, which model wraps a backbone, which hparams exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.paths import CONFIG_DIR


@dataclass(frozen=True)
class CatalogTask:
    option: str
    type: str
    num_classes: int | None
    bands: list[str]
    offered: list[str]  # every band the dataset offers, in the datamodule's names


def _load(path: Path) -> Any:
    return OmegaConf.load(path)


def tasks_by_datamodule(config_dir: Path = CONFIG_DIR) -> dict[str, CatalogTask]:
    """Datamodule class name (without its module: iterate writes both terratorch.datamodules.X and
    terratorch.datamodules.m_x.X) -> the catalog task that wraps it. Tasks sharing a class (the
    GEO-Bench-2 proxies) are left out: the class alone does not say which dataset is meant."""
    found: dict[str, list[CatalogTask]] = {}
    for path in sorted((config_dir / "task").glob("*.yaml")):
        node = _load(path)
        target = OmegaConf.select(node, "datamodule._target_", default=None)
        if not target:
            continue
        offered = OmegaConf.select(node, "band_names", default=None)
        task = CatalogTask(option=path.stem, type=str(node.get("type")), num_classes=node.get("num_classes"),
                           bands=list(node.get("bands") or []),
                           offered=list(offered.keys()) if offered is not None else list(node.get("bands") or []))
        found.setdefault(str(target).rsplit(".", 1)[-1], []).append(task)
    return {cls: options[0] for cls, options in found.items() if len(options) == 1}


def models_by_backbone(config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """TerraTorch backbone registry name -> the catalog model option that builds it."""
    out: dict[str, str] = {}
    for path in sorted((config_dir / "model").glob("*.yaml")):
        backbone = OmegaConf.select(_load(path), "model_args.backbone", default=None)
        if backbone and backbone not in out:
            out[str(backbone)] = path.stem
    return out


def hparam_keys(config_dir: Path = CONFIG_DIR) -> set[str]:
    """Dotted keys under `hparams` in the primary config: a search key outside them is written +key."""
    flat: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            flat.add(f"{prefix}{key}")
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(_load(config_dir / "config.yaml").hparams), "hparams.")
    return flat
