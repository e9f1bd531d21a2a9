"""Probe protocols (protocol=knn, protocol=linear_probe): a small head fitted on the encoder's cached features.

Torch-free, so preflight and the CLI can import it: the task types each probe serves, the probe's settings
(cfg.probe) and the embedding cache's directory (cfg.embeddings.cache_dir), each refused with a sentence
before anything is computed. The probe itself runs in bench.probes.run (torch).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

# What each probe serves: knn votes on pooled features (one label, or a label set, per sample); the
# linear probe is a logistic regression on pooled features, or a per-pixel linear head for segmentation.
SERVES = {
    "knn": ("classification", "multilabel_classification"),
    "linear_probe": ("classification", "multilabel_classification", "segmentation"),
}
DISTANCES = ("cosine", "euclidean")


def probe_kind(cfg: DictConfig) -> str | None:
    """The cell's probe (cfg.probe.kind), or None: the task's decoder is trained (full_ft, frozen)."""
    return OmegaConf.select(cfg, "probe.kind", default=None)


def check_probe(cfg: DictConfig) -> None:
    """A probe on a task type it cannot serve, a bad k or distance, and an unwritable cache path are
    refused here, in preflight (and so in a dry run, for every cell), before anything is computed."""
    kind = probe_kind(cfg)
    if kind is None:
        if _caches_frozen_features(cfg):  # protocol=frozen keeps its encoder features there too
            check_cache_dir(cache_dir(cfg))
        return
    if kind not in SERVES:
        raise ConfigError(f"probe.kind={kind!r} is not a probe; use protocol=knn or protocol=linear_probe")
    task_type = cfg.task.type
    if task_type not in SERVES[kind]:
        raise ConfigError(
            f"protocol={kind} cannot serve task '{cfg.task.name}': it is a {task_type} task, and {kind} "
            f"serves only {', '.join(SERVES[kind])} tasks. Use protocol=frozen or protocol=full_ft for it."
        )
    probe = cfg.probe
    if kind == "knn":
        k = probe.get("k")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"probe.k={k!r} is not possible: it is the number of neighbours, a whole number >= 1")
        if probe.get("distance") not in DISTANCES:
            raise ConfigError(f"probe.distance={probe.get('distance')!r} is not one of {', '.join(DISTANCES)}")
    else:
        for key in ("lr", "weight_decay", "epochs"):
            value = probe.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"probe.{key}={value!r} is not possible: it must be a number >= 0")
    check_cache_dir(cache_dir(cfg))


def frozen_features_off(cfg: DictConfig) -> bool:
    """embeddings.frozen_features=false: protocol=frozen trains end to end, caching nothing."""
    return str(OmegaConf.select(cfg, "embeddings.frozen_features", default="auto")).lower() in ("false", "off", "0")


def _caches_frozen_features(cfg: DictConfig) -> bool:
    """protocol=frozen may cache (bench.probes.frozen decides per trial): a cache dir is set and not opted out."""
    frozen = OmegaConf.select(cfg, "task.task_args.freeze_backbone", default=False)
    return (
        bool(frozen)
        and not frozen_features_off(cfg)
        and bool(OmegaConf.select(cfg, "embeddings.cache_dir", default=None))
    )


def cache_dir(cfg: DictConfig) -> Path:
    """embeddings.cache_dir: where the features are kept (a path every trial of the cell can read: on
    SLURM or Ray, a shared file system)."""
    value = OmegaConf.select(cfg, "embeddings.cache_dir", default=None)
    if not value:
        raise ConfigError("embeddings.cache_dir is not set: the probes keep the encoder's features there")
    return Path(str(value)).expanduser()


def check_cache_dir(path: Path) -> None:
    """The cache dir, or the nearest existing folder above it, must be writable (nothing is created here)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"embeddings.cache_dir={str(path)!r} is not writable ({existing} "
            f"{'is not a folder' if not existing.is_dir() else 'cannot be written by this user'}): the probes keep "
            "the encoder's features there. Point embeddings.cache_dir (or $BENCH_CACHE_DIR) at a writable folder."
        )
    if existing == path and os.geteuid() == 0 and path.stat().st_mode & 0o002:
        raise ConfigError(
            f"embeddings.cache_dir={str(path)!r} is world-writable and bench runs as root: anyone could plant "
            "features there. Use a folder only its owner can write."
        )
