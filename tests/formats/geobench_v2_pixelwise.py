"""GEO-Bench-2 datasets in their real on-disk format (pixelwise): writers built on tests/formats/geobench_v2.py's
tortilla and GeoTIFF helpers. WRITERS: dataset key -> writer(root).

Each writer follows its dataset's builder (geobench_v2/generate_benchmark/<key>.py) and the dataset
class that reads it (geobench_v2/datasets/<key>.py): the same file name (the class's `paths`), part ids
in the order __getitem__ reads them, band counts, dtypes and metadata columns; a builder that puts
different values on the part rows and the sample row (so2sat's and forestnet's `labels`: the class
index on the parts, which __getitem__ reads, its name on the sample) is followed too. Tiles are
TILE px (the real ones are 256-650) except so2sat's, which are natively 32x32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.formats.geobench_v2 import PER_SPLIT, TILE, _each_split, write_samples


def tiff(
    array: np.ndarray,
    crs: str | None = None,
    origin: tuple[float, float] = (0.0, 0.0),
    res: float = 10.0,
    **profile: Any,
) -> bytes:
    """A (C, H, W) array as GeoTIFF bytes in `crs` (None: no georeferencing, as so2sat's builder
    wrote it), `res` units a pixel from the top-left `origin`; profile: extra creation options."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    array = np.asarray(array)
    array = array[None] if array.ndim == 2 else array
    meta = dict(driver="GTiff", count=array.shape[0], height=array.shape[1], width=array.shape[2], dtype=array.dtype)
    if crs is not None:
        meta.update(crs=rasterio.crs.CRS.from_string(crs), transform=from_origin(*origin, res, res))
    with MemoryFile() as mem:
        with mem.open(**meta, **profile) as dst:
            dst.write(array)
        return mem.read()


def stac(
    crs: str, origin: tuple[float, float], res: float, shape: tuple[int, int], lon: float, lat: float, time_start: float
) -> dict[str, Any]:
    """The stac:* columns tacotoolbox writes from a builder's stac_data (crs, geotransform,
    raster_shape, time_start), with the centroid it derives (WGS84), which the datasets read."""
    return {
        "stac:crs": crs,
        "stac:geotransform": [origin[0], res, 0.0, origin[1], 0.0, -res],
        "stac:raster_shape": list(shape),
        "stac:time_start": time_start,
        "stac:time_end": time_start,
        "stac:centroid": f"POINT ({lon} {lat})",
    }


# Zstandard-compressed, tiled, predictor 2: how the caffe and fotw builders rewrote their GeoTIFFs.
ZSTD = dict(tiled=True, blockxsize=TILE, blockysize=TILE, compress="zstd", zstd_level=13, predictor=2)


# ---------------------------------------------------------------------------------------------
# Classification


def write_so2sat(root: Path) -> Path:
    """so2sat/geobench_so2sat.tortilla (generate_benchmark/so2sat.py, from GEO-Bench's m-so2sat HDF5):
    per sample `s1` (2 bands: "01 - VH.Real" then "03 - VV.Real", the HDF5's sorted key order the
    builder indexes in, though the dataset names them VV, VH) and `s2` (10 bands B02-B12 without
    B09/B10, reflectance), float32, 32x32, GeoTIFFs without georeferencing
    and no stac columns (the builder gave stac_data=None). Part rows: `labels` = the LCZ class
    index (what __getitem__ reads), `patch_id`; the sample row: `labels` = the class name."""
    from geobench_v2.datasets import GeoBenchSo2Sat

    names = list(GeoBenchSo2Sat.classes)

    def make(split, i, rng):
        label, patch = int(rng.integers(len(names))), f"{split}_{i:05d}"
        s1 = rng.normal(0, 0.2, (2, 32, 32)).astype("float32")
        s2 = rng.uniform(0, 0.4, (10, 32, 32)).astype("float32")
        own = {"labels": label}
        return {
            "split": split,
            "stac": False,
            "labels": names[label],
            "patch_id": patch,
            "parts": [("s1", tiff(s1), "GTiff", own), ("s2", tiff(s2), "GTiff", own)],
        }

    return write_samples(root / "so2sat" / "geobench_so2sat.tortilla", _each_split(make))


def write_forestnet(root: Path) -> Path:
    """forestnet/geobench_forestnet.tortilla (generate_benchmark/forestnet.py, from GEO-Bench's
    m-forestnet HDF5): per sample one `image` GeoTIFF, Landsat-8 B02 B03 B04 B8A B11 B12 (8-bit
    composites, as the dataset's statistics, means 72-123, show), EPSG:4326 at 15 m (in degrees),
    TILE px here (332 real). Part row: `labels` = the driver's class index, `patch_id`, `lat`,
    `lon`, stac (its centroid gives lon/lat); the sample row the same with `labels` = the name."""
    from geobench_v2.datasets import GeoBenchForestnet

    names = list(GeoBenchForestnet.classes)
    res = 15 / 111320

    def make(split, i, rng):
        label, lon, lat = int(rng.integers(len(names))), 110.0 + i, -1.0 - i
        image = rng.integers(0, 255, (6, TILE, TILE), dtype="uint8")
        meta = {
            "patch_id": f"{i}_{lat}_{lon}_2015_06_01",
            "lat": lat,
            "lon": lon,
            **stac("EPSG:4326", (lon, lat), res, (TILE, TILE), lon, lat, 1.43e9),
        }
        return {
            "split": split,
            "stac": False,
            "labels": names[label],
            **meta,
            "parts": [("image", tiff(image, "EPSG:4326", (lon, lat), res), "GTiff", {"labels": label})],
        }

    return write_samples(root / "forestnet" / "geobench_forestnet.tortilla", _each_split(make))


# ---------------------------------------------------------------------------------------------
# Segmentation


def write_caffe(root: Path) -> Path:
    """caffe/geobench_caffe.tortilla (generate_benchmark/caffe.py, from CaFFe's PNGs): per sample
    `img` (1 band, uint8 SAR amplitude) and `mask` (uint8 zones remapped to 0 N/A, 1 rock, 2 glacier,
    3 ocean/ice melange), zstd GeoTIFFs in a polar stereographic CRS, TILE px here (512 real).
    Columns on every row: add_test_split, lat, lon, sensor, glacier_name, stac."""

    def make(split, i, rng):
        lon, lat, origin = -50.0 + i, 69.0, (-200000.0 + 1000 * i, -2200000.0)
        img = rng.integers(0, 255, (1, TILE, TILE), dtype="uint8")
        mask = rng.integers(0, 4, (1, TILE, TILE), dtype="uint8")
        parts = [
            ("img", tiff(img, "EPSG:3413", origin, 6.0, **ZSTD), "GTiff"),
            ("mask", tiff(mask, "EPSG:3413", origin, 6.0, **ZSTD), "GTiff"),
        ]
        return {
            "split": split,
            "stac": False,
            "parts": parts,
            "add_test_split": False,
            "lat": lat,
            "lon": lon,
            "sensor": ("S1", "TSX", "ERS")[i % 3],
            "glacier_name": ("JAC", "Mapple", "COL")[i % 3],
            **stac("EPSG:3413", origin, 6.0, (TILE, TILE), lon, lat, 1.5e9),
        }

    return write_samples(root / "caffe" / "geobench_caffe.tortilla", _each_split(make))


def write_spacenet2(root: Path) -> Path:
    """spacenet2/geobench_spacenet2.tortilla (generate_benchmark/spacenet2.py): per sample `ps-ms`
    (WorldView-3 pan-sharpened, 8 bands coastal..nir2, uint16), `pan` (1 band, uint16),
    `semantic_mask` (uint8 0/1 buildings; the dataset adds 1: 1 no-building, 2 building) and
    `instance_mask` (uint16 building ids), LZW GeoTIFFs at 0.3 m, TILE px here (650 real).
    Columns: lon, lat, source_label_file, city, stac (time_start 0, as the builder set it)."""

    def make(split, i, rng):
        city = ("Vegas", "Paris", "Shanghai")[i]
        lon, lat, origin = -115.3 + 0.01 * i, 36.2, (640000.0 + 200 * i, 4010000.0)
        lzw = dict(tiled=True, blockxsize=TILE, blockysize=TILE, compress="lzw", predictor=2)
        geo = lambda a: tiff(a, "EPSG:32611", origin, 0.3, **lzw)  # noqa: E731
        parts = [
            ("ps-ms", geo(rng.integers(0, 2000, (8, TILE, TILE), dtype="uint16")), "GTiff"),
            ("pan", geo(rng.integers(0, 2000, (1, TILE, TILE), dtype="uint16")), "GTiff"),
            ("semantic_mask", geo(rng.integers(0, 2, (1, TILE, TILE), dtype="uint8")), "GTiff"),
            ("instance_mask", geo(rng.integers(0, 30, (1, TILE, TILE), dtype="uint16")), "GTiff"),
        ]
        return {
            "split": split,
            "stac": False,
            "parts": parts,
            "lon": lon,
            "lat": lat,
            "city": city,
            "source_label_file": f"AOI_2_{city}_Train/geojson/buildings/buildings_AOI_2_{city}_img{i}.geojson",
            **stac("EPSG:32611", origin, 0.3, (TILE, TILE), lon, lat, 0),
        }

    return write_samples(root / "spacenet2" / "geobench_spacenet2.tortilla", _each_split(make))


def write_fotw(root: Path) -> Path:
    """fotw/geobench_fotw.tortilla (generate_benchmark/fotw.py, from Fields of The World): per sample
    `win_a` and `win_b` (two Sentinel-2 dates of the season, red green blue nir, uint16), then
    `instance_mask` (uint8: the builder casts the field ids) and `semantic_3class_mask` (uint8: 0
    background, 1 field, 2 field boundary, 3 unlabelled, which FTW's presence-only countries, here
    rwanda, carry), zstd GeoTIFFs at 10 m, TILE px here (256 real). Columns on every row:
    add_test_split, lon, lat, aoi_id, country, stac (time_start: the year of collection)."""
    countries = ("austria", "france", "rwanda")

    def make(split, i, rng):
        lon, lat, origin = 14.0 + i, 47.0, (400000.0 + 3000 * i, 5200000.0)
        geo = lambda a: tiff(a, "EPSG:32633", origin, 10.0, **ZSTD)  # noqa: E731
        mask = rng.integers(0, 3, (1, TILE, TILE), dtype="uint8")
        if countries[i] == "rwanda":
            mask[mask == 0] = 3  # presence-only labels: what is not a field is unknown
        parts = [
            ("win_a", geo(rng.integers(0, 4000, (4, TILE, TILE), dtype="uint16")), "GTiff"),
            ("win_b", geo(rng.integers(0, 4000, (4, TILE, TILE), dtype="uint16")), "GTiff"),
            ("instance_mask", geo(rng.integers(0, 40, (1, TILE, TILE), dtype="uint8")), "GTiff"),
            ("semantic_3class_mask", geo(mask), "GTiff"),
        ]
        return {
            "split": split,
            "stac": False,
            "parts": parts,
            "add_test_split": False,
            "lon": lon,
            "lat": lat,
            "aoi_id": f"g{PER_SPLIT * 100 + i}_{split}",
            "country": countries[i],
            **stac("EPSG:32633", origin, 10.0, (TILE, TILE), lon, lat, 2021),
        }

    return write_samples(root / "fotw" / "geobench_fotw.tortilla", _each_split(make))


WRITERS: dict = {
    "so2sat": write_so2sat,
    "forestnet": write_forestnet,
    "caffe": write_caffe,
    "spacenet2": write_spacenet2,
    "fotw": write_fotw,
}
