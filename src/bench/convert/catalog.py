"""What bench's own catalog offers, read from conf/ without composing it (no Hydra, no torch):
which task wraps a TerraTorch datamodule class, which model wraps a backbone (with its factory,
arguments and per-task-type heads), which hparams exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from bench.paths import CONFIG_DIR

# What bench's spec builds a model with when its file names no factory (bench.spec).
FACTORY = "EncoderDecoderFactory"


@dataclass(frozen=True)
class CatalogTask:
    option: str
    type: str
    num_classes: int | None
    bands: list[str]
    offered: list[str]  # every band the dataset offers, in the datamodule's names


def _load(path: Path) -> DictConfig:
    """A conf/ group file as Hydra composes it on its own: the files its `defaults:` list names
    (/model_defaults/prithvi@_here_ from conf/, `common` from the file's own folder) merged in
    order, the file itself at `_self_` (last where unlisted); group choices (`- model: x`) are left
    out. conf/'s task, model and primary config files are mappings (Hydra composes them as such)."""
    node = _raw(path)
    defaults = node.pop("defaults", None) if "defaults" in node else None
    if not defaults:
        return node
    layers: list[DictConfig] = []
    for entry in defaults:
        if entry == "_self_":
            layers.append(node)
        elif isinstance(entry, str):
            name = entry.split("@", 1)[0]
            folder = path.parent.parent if name.startswith("/") else path.parent
            layers.append(_load(folder / f"{name.lstrip('/')}.yaml"))
    if "_self_" not in defaults:
        layers.append(node)
    return cast(DictConfig, OmegaConf.merge(*layers))


def _raw(path: Path) -> DictConfig:
    return cast(DictConfig, OmegaConf.load(path))


def _derived(path: Path) -> bool:
    """A file made from another option of its own group (bench.convert writes these, with defaults
    [/task/<option>@_here_, _self_]): it inherits that option's datamodule or backbone, but is not the
    catalog's own entry for it."""
    defaults = _raw(path).get("defaults") or []
    return any(isinstance(entry, str) and entry.startswith(f"/{path.parent.name}/") for entry in defaults)


def load_option(group: str, option: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """conf/<group>/<option>.yaml with its defaults list merged (see _load), interpolations as written."""
    return _load(config_dir / group / f"{option}.yaml")


def plain(node: DictConfig) -> dict[str, Any]:
    """A mapping node as plain dicts and lists, interpolations as written."""
    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=False))


def tasks_by_datamodule(config_dir: Path = CONFIG_DIR) -> dict[str, CatalogTask]:
    """Datamodule class name (without its module: iterate writes both terratorch.datamodules.X and
    terratorch.datamodules.m_x.X) -> the catalog task that wraps it. Tasks sharing a class (the
    GEO-Bench-2 proxies) are left out: the class alone does not say which dataset is meant."""
    found: dict[str, list[CatalogTask]] = {}
    for path in sorted((config_dir / "task").glob("*.yaml")):
        if _derived(path):
            continue
        node = _load(path)
        target = OmegaConf.select(node, "datamodule._target_", default=None)
        if not target:
            continue
        offered = OmegaConf.select(node, "band_names", default=None)
        task = CatalogTask(
            option=path.stem,
            type=str(node.get("type")),
            num_classes=node.get("num_classes"),
            bands=list(node.get("bands") or []),
            offered=list(offered.keys()) if offered is not None else list(node.get("bands") or []),
        )
        found.setdefault(str(target).rsplit(".", 1)[-1], []).append(task)
    return {cls: options[0] for cls, options in found.items() if len(options) == 1}


@dataclass(frozen=True)
class CatalogModel:
    option: str
    factory: str
    model_args: dict[str, Any]  # as written: ${task.*} interpolations unresolved
    heads: dict[str, dict[str, Any]]  # task type -> the neck, decoder and head arguments it adds

    def derived(self) -> list[str]:
        """model_args the catalog computes for each cell from the task (${task.model_bands}, ...)."""
        return sorted(k for k, v in self.model_args.items() if "${task." in str(v))


def _heads(model: DictConfig) -> dict[str, dict[str, Any]]:
    """task_types with their interpolations followed (`multilabel_classification: ${.classification}`,
    `segmentation: ${..heads.${..head}}`: the head the file picks by name), ${task.*} values as written."""
    types = model.get("task_types") or {}
    heads: dict[str, dict[str, Any]] = {}
    for name in types:
        head = types[name]  # a node interpolation gives the node it names
        if isinstance(head, DictConfig):
            heads[name] = plain(head)
    return heads


def models_by_backbone(config_dir: Path = CONFIG_DIR) -> dict[str, CatalogModel]:
    """TerraTorch backbone registry name -> the catalog model that builds it."""
    out: dict[str, CatalogModel] = {}
    for path in sorted((config_dir / "model").glob("*.yaml")):
        if _derived(path):
            continue
        model = _load(path)
        node = plain(model)
        args = node.get("model_args") or {}
        backbone = args.get("backbone")
        if backbone and backbone not in out:
            out[str(backbone)] = CatalogModel(
                option=path.stem, factory=node.get("model_factory", FACTORY), model_args=args, heads=_heads(model)
            )
    return out


def hparam_keys(config_dir: Path = CONFIG_DIR) -> set[str]:
    """Dotted keys under `hparams` in the primary config: a search key outside them is written +key."""
    flat: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            flat.add(f"{prefix}{key}")
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(plain(_load(config_dir / "config.yaml").hparams), "hparams.")
    return flat
