"""Deterministic synthetic GeoTIFF datasets: the embedded default that needs no download.

Tiles are 6-band HLS-style reflectances (BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2), 64x64,
written as real georeferenced GeoTIFFs with rasterio so the training path is the same one real
data takes. The signal is spectral and spatially coherent (vegetation-like patches raise NIR and
lower RED/SWIR) but buried in noise, so a model needs several epochs at a sensible learning rate
to separate it: that is what makes hyperparameters visibly matter.

Imports only numpy and rasterio, so the CLI can prepare data without importing torch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
# Mean reflectance of background and of "vegetation" pixels, per band.
BACKGROUND = np.array([0.08, 0.10, 0.12, 0.22, 0.25, 0.18], dtype=np.float32)
VEGETATION = np.array([0.06, 0.09, 0.07, 0.34, 0.20, 0.12], dtype=np.float32)
# Classification: each class shifts the patch spectrum in its own direction.
CLASS_SHIFTS = np.array(
    [
        [0.00, 0.00, 0.00, 0.10, -0.04, -0.05],  # vegetation-like
        [0.03, 0.04, 0.05, -0.06, 0.00, 0.00],  # built-up-like
        [0.02, 0.02, -0.02, -0.10, -0.12, -0.10],  # water-like
    ],
    dtype=np.float32,
)
NOISE = 0.06
TILE = 64
SPLITS = {"train": 32, "val": 16, "test": 16}
# Bump when the generator changes, so stale caches are never reused.
VERSION = 1


def _blob_mask(rng: np.random.Generator, coverage_range: tuple[float, float] = (0.2, 0.5)) -> np.ndarray:
    """A few soft ellipses covering a random share of the tile."""
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    field = np.zeros((TILE, TILE), dtype=np.float32)
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0, TILE, size=2)
        ry, rx = rng.uniform(6, 20, size=2)
        field = np.maximum(field, 1.0 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2)
    threshold = np.quantile(field, 1.0 - rng.uniform(*coverage_range))
    return field > threshold


def _noisy(rng: np.random.Generator, mean_image: np.ndarray) -> np.ndarray:
    return (mean_image + rng.normal(0.0, NOISE, size=mean_image.shape)).astype(np.float32)


def _write_tif(path: Path, array: np.ndarray, tile_index: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    bands = array if array.ndim == 3 else array[None]
    # A plausible UTM footprint, 30 m pixels, so readers see real georeferencing.
    transform = from_origin(500000 + tile_index * TILE * 30, 4000000, 30, 30)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=TILE,
        width=TILE,
        count=bands.shape[0],
        dtype=bands.dtype,
        crs="EPSG:32617",
        transform=transform,
    ) as dst:
        dst.write(bands)
        if bands.shape[0] == len(BANDS):
            dst.descriptions = tuple(BANDS)


def _segmentation_tiles(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in SPLITS.items():
        out = root / split
        out.mkdir(parents=True)
        for i in range(count):
            mask = _blob_mask(rng)
            mean = np.where(mask[None], VEGETATION[:, None, None], BACKGROUND[:, None, None])
            _write_tif(out / f"tile_{i:03d}_img.tif", _noisy(rng, mean), i)
            _write_tif(out / f"tile_{i:03d}_mask.tif", mask.astype(np.int16), i)


def _classification_tiles(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in SPLITS.items():
        for i in range(count):
            label = i % len(CLASS_SHIFTS)
            out = root / split / f"class_{label}"
            out.mkdir(parents=True, exist_ok=True)
            mask = _blob_mask(rng)
            patch = BACKGROUND + CLASS_SHIFTS[label]
            mean = np.where(mask[None], patch[:, None, None], BACKGROUND[:, None, None])
            _write_tif(out / f"tile_{i:03d}.tif", _noisy(rng, mean), i)


WRITERS = {"segmentation": _segmentation_tiles, "classification": _classification_tiles}


def ensure_synthetic_dataset(root: str | os.PathLike[str], kind: str, seed: int = 0) -> Path:
    """Write the dataset under ``root`` unless it is already there; return ``root``.

    Concurrent trials may call this at once, so tiles go to a private temporary directory that is
    renamed into place atomically; a loser of that race discards its copy.
    """
    root = Path(root)
    marker = root / f".complete_v{VERSION}"
    if marker.exists():
        return root
    if kind not in WRITERS:
        raise ValueError(f"unknown synthetic dataset kind {kind!r}; expected one of {sorted(WRITERS)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        WRITERS[kind](staging, seed)
        (staging / marker.name).touch()
        if root.exists():  # an old or partial version: keep it aside rather than delete data
            root.rename(root.with_name(f"{root.name}.stale.{os.getpid()}"))
        os.rename(staging, root)
    except OSError:
        if not marker.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
