"""GEO-Bench-2 datasets in their real on-disk format (temporal): writers built on tests/formats/geobench_v2.py's
tortilla and GeoTIFF helpers. WRITERS: dataset key -> writer(root).

Each writer follows its dataset's builder (geobench_v2/generate_benchmark/<key>.py) and the dataset class
that reads it (geobench_v2/datasets/<key>.py), checked against GEO-Bench-2's own test tortillas
(tests/data/<key>/<key>.tortilla in The-AI-Alliance/GEO-Bench-2): the class's `paths` (three part files),
a sample tortilla per time series whose parts come in the order __getitem__ reads them, their ids,
band counts, dtypes, georeferencing and metadata columns. Tiles are TILE_T px (the real ones 256-512)
and the series are as long as the real ones (the datasets index into them), 3 samples per split.
pastis's writer is tests/formats/geobench_v2.py's write_pastis (registered there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.formats.geobench_v2 import _each_split, write_samples

# Small tiles: the datamodules resize every sample to task.image_size, so the reader does not depend on it.
TILE_T = 32


def _tiff(array: np.ndarray, crs: str | None, transform: Any = None) -> bytes:
    """A (C, H, W) array as GeoTIFF bytes, georeferenced as its builder left it (crs None: none)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    meta = dict(driver="GTiff", count=array.shape[0], height=array.shape[1], width=array.shape[2], dtype=array.dtype)
    if crs is not None:
        meta.update(crs=rasterio.crs.CRS.from_string(crs), transform=transform)
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # crs None is the real layout
        with mem.open(**meta) as dst:
            dst.write(array)
        return mem.read()


# ---------------------------------------------------------------------------------------------
# DynamicEarthNet

DAY = 86400.0


def write_dynamic_earthnet(root: Path) -> list[Path]:
    """dynamic_earthnet/geobench_dynamic_earthnet.000{0,1,2}.part.tortilla: one sample per location and
    month (generate_benchmark/dynamic_earthnet.py, create_tortilla): its daily PlanetScope images
    `planet_0` ... `planet_{n-1}` (b, g, r, nir; int16; 3 m; one a day, n = the month's 28-31 days),
    then `s1` (8 bands, float32), `s2` (12 bands, int16) and `label` (uint8: 0-6, the 7 land-cover
    classes). Every row carries the stac:* columns (crs, 3 m geotransform, raster shape, time_start:
    the image's day, the first day for s1/s2/label; no time_end), add_test_split, lon, lat, area_id,
    original_id and the part's `modality`; the sample's row the same but `modality`. The dataset's
    "weekly" series reads planet_0, 4, 9, 14, 19 and 24; "daily" every planet image."""
    crs, res = "EPSG:32616", 3.0

    def make(split, i, rng):
        days = 28 + i  # Feb, a 29-day month, a 30-day one
        x0, y0 = 264079.5 + 1000 * i, 2139061.5
        lon, lat = -89.23 + 0.01 * i, 19.33
        start = 1519862400.0 + 31 * DAY * i
        columns = {
            "stac:crs": crs,
            "stac:geotransform": [x0, res, 0.0, y0, 0.0, -res],
            "stac:raster_shape": [TILE_T, TILE_T],
            "stac:time_start": start,
            "stac:time_end": None,
            "stac:centroid": f"POINT ({lon} {lat})",
            "add_test_split": False,
            "lon": lon,
            "lat": lat,
            "area_id": f"2065_3647_1{i}",
            "original_id": f"2065_3647_1{i}_11E-89N_16N_2018-0{3 + i}",
        }
        from rasterio.transform import from_origin

        geo = dict(crs=crs, transform=from_origin(x0, y0, res, res))
        planet = [
            (
                f"planet_{d}",
                _tiff(rng.integers(200, 3000, (4, TILE_T, TILE_T)).astype("int16"), **geo),
                "GTiff",
                {"stac:time_start": start + d * DAY, "modality": "planet"},
            )
            for d in range(days)
        ]
        others = [
            (
                "s1",
                _tiff(rng.normal(0.05, 0.03, (8, TILE_T, TILE_T)).astype("float32"), **geo),
                "GTiff",
                {"modality": "s1"},
            ),
            (
                "s2",
                _tiff(rng.integers(200, 3500, (12, TILE_T, TILE_T)).astype("int16"), **geo),
                "GTiff",
                {"modality": "s2"},
            ),
            (
                "label",
                _tiff(rng.integers(0, 7, (1, TILE_T, TILE_T)).astype("uint8"), **geo),
                "GTiff",
                {"modality": "label"},
            ),
        ]
        return {"split": split, "stac": False, "parts": planet + others, **columns}

    return write_samples(root / "dynamic_earthnet" / "geobench_dynamic_earthnet.tortilla", _each_split(make), parts=3)


# ---------------------------------------------------------------------------------------------
# BioMassters

# BioMassters' year runs September to August; each chip has one S1 and (mostly) one S2 image a month.
MONTHS = (
    "September",
    "October",
    "November",
    "December",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
)


def write_biomassters(root: Path) -> list[Path]:
    """biomassters/geobench_biomassters.000{0,1,2}.part.tortilla: per chip (generate_benchmark/biomassters.py,
    create_tortilla) its S1 images `<chip>_S1_<Month>` (all 12 months, September first; VV_asc, VH_asc,
    VV_desc, VH_desc; float32 dB, -9999 where there is no data), then its S2 images `<chip>_S2_<Month>`
    (the months it has; 11 bands, the 10 the dataset names then the cloud probability; uint16), then
    `<chip>_AGBM` (above-ground biomass, Mg/ha; float32). The builder rewrote the features with a dummy
    EPSG:4326 transform (1 unit a pixel) and the AGBM with the original's (none). Part rows carry
    add_test_split, month (none for the AGBM), source_img_file and modality (S1, S2, AGBM); the chip's
    row only add_test_split, no stac:* columns. The dataset takes the first num_time_steps S1 and S2
    rows, zero-padding an S2 series that is shorter (the third chip of each split: 4 months)."""
    from rasterio.transform import Affine

    geo = dict(crs="EPSG:4326", transform=Affine(1.0, 0.0, 0.0, 0.0, -1.0, TILE_T))

    def make(split, i, rng):
        chip = f"{0x51241122 + 7 * i + 100 * len(split):08x}"
        features = "features"

        def image(modality, month, array):
            return (
                f"{chip}_{modality}_{month}",
                _tiff(array, **geo),
                "GTiff",
                {"month": month, "source_img_file": f"{features}/{chip}_{modality}_{month}.tif", "modality": modality},
            )

        s1 = []
        for month in MONTHS:
            data = rng.normal(-13, 5, (4, TILE_T, TILE_T)).astype("float32")
            data[:, :2, :2] = -9999.0  # a no-data corner, which the dataset zeroes in every band
            s1.append(image("S1", month, data))
        s2_months = MONTHS[:4] if i == 2 else tuple(m for m in MONTHS if m != "December")
        s2 = [image("S2", month, rng.integers(0, 5000, (11, TILE_T, TILE_T)).astype("uint16")) for month in s2_months]
        agbm = (
            f"{chip}_AGBM",
            _tiff(rng.gamma(2.0, 40.0, (1, TILE_T, TILE_T)).astype("float32"), None),
            "GTiff",
            {"month": None, "source_img_file": f"agbm/{chip}_AGBM.tif", "modality": "AGBM"},
        )
        return {"split": split, "stac": False, "parts": s1 + s2 + [agbm], "add_test_split": False}

    return write_samples(root / "biomassters" / "geobench_biomassters.tortilla", _each_split(make), parts=3)


WRITERS = {
    "dynamic_earthnet": write_dynamic_earthnet,
    "biomassters": write_biomassters,
}
