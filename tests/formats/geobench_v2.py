"""GEO-Bench-2 in its real on-disk format: tortilla files of GeoTIFFs, as geobench_v2 reads them.

GEO-Bench-2 ships every dataset as one or more `*.tortilla` files (Hugging Face dataset repos
aialliance/<key>), read by `tacoreader.load`. A tortilla is one file:

    bytes 0-2     magic b"#y"
    bytes 2-10    footer offset (little-endian u64)
    bytes 10-18   footer length (u64)
    bytes 18-26   number of data partitions (u64)
    bytes 26-200  zero padding
    200...        the data pile: each item's bytes, back to back
    footer        a Parquet table (zstd), one row per item: tortilla:id, tortilla:file_format,
                  tortilla:data_split, tortilla:offset, tortilla:length, stac:*, then the
                  dataset's own columns

GEO-Bench-2's builders (geobench_v2/generate_benchmark/<key>.py) nest them: the dataset file holds
one row per sample, of format "TORTILLA", whose bytes are a sample tortilla holding that sample's
GeoTIFFs (format "GTiff"), each row carrying the sample's metadata. `write_tortilla` lays out the
bytes as the writer GEO-Bench-2 used does (pytortilla 0.5.1's create_a_tortilla, which
tacotoolbox's `tortilla.create` was at the time; checked byte-identical to it); the per-dataset writers below fill it with the
items and columns each dataset class reads in its __getitem__. A dataset too large for one file
(PASTIS) is split by that writer into `<name>.NNNN.part.tortilla` files: consecutive runs of the
samples, each part a whole tortilla of its own (offsets from its own header) whose header counts
the parts; tacoreader.load reads the list of them as one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEADER_SIZE = 200
SPLITS = ("train", "validation", "test")
# Three per split: the train loader drops the last incomplete batch of 2.
PER_SPLIT = 3
# Tile side for the image-and-mask datasets: smaller than the real tiles (256-512) to stay fast;
# the reader does not depend on it (the datamodule resizes to img_size).
TILE = 64


def write_tortilla(path: Path | None, items: Sequence[dict[str, Any]], ndatapartitions: int = 1) -> bytes:
    """One tortilla: items are {'id', 'file_format', 'data_split', 'data': bytes, **columns}.
    Writes it to `path` (if given) and returns its bytes. ndatapartitions: how many part files the
    dataset is split into (each part's header says so; 1 for a whole file)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, offset = [], HEADER_SIZE
    for item in items:
        data = item["data"]
        row = {
            "tortilla:id": item["id"],
            "tortilla:file_format": item["file_format"],
            "tortilla:data_split": item.get("data_split"),
            "tortilla:offset": offset,
            "tortilla:length": len(data),
        }
        row.update({k: v for k, v in item.items() if k not in ("id", "file_format", "data_split", "data")})
        rows.append(row)
        offset += len(data)
    sink = pa.BufferOutputStream()
    pq.write_table(
        pa.Table.from_pandas(pd.DataFrame(rows)), sink, compression="zstd", compression_level=22, use_dictionary=False
    )
    footer = sink.getvalue().to_pybytes()
    header = (
        b"#y" + offset.to_bytes(8, "little") + len(footer).to_bytes(8, "little") + ndatapartitions.to_bytes(8, "little")
    )
    blob = header.ljust(HEADER_SIZE, b"\0") + b"".join(i["data"] for i in items) + footer
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return blob


def geotiff(array: np.ndarray, lon: float = 10.0, lat: float = 50.0, res: float = 10.0) -> bytes:
    """A (C, H, W) array as GeoTIFF bytes (UTM 32N, `res` metres a pixel)."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    profile = dict(
        driver="GTiff",
        count=array.shape[0],
        height=array.shape[1],
        width=array.shape[2],
        dtype=array.dtype,
        crs=rasterio.crs.CRS.from_epsg(32632),
        transform=from_origin(500000 + lon * 1000, 5500000 + lat * 1000, res, res),
    )
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(array)
        return mem.read()


def _stac(shape: tuple[int, int]) -> dict[str, Any]:
    return {
        "stac:crs": "EPSG:32632",
        "stac:geotransform": [500000.0, 10.0, 0.0, 5500000.0, 0.0, -10.0],
        "stac:raster_shape": list(shape),
        "stac:time_start": 1.6e9,
        "stac:time_end": 1.6e9,
        "stac:centroid": "POINT (9.0 49.6)",
    }


def write_samples(file: Path, samples: Sequence[dict[str, Any]], parts: int = 1) -> Path | list[Path]:
    """The dataset tortilla: each sample is {'split', 'parts': [(id, bytes, format[, columns])],
    **columns}; the sample's columns go on every part's row and on the sample's row, as
    GEO-Bench-2's builders do, a part's own columns (its `dates`, say) on its row only. A sample
    with 'stac': False gets no stac:* columns (its builder gave none: PASTIS's HDF5 parts).

    parts > 1 splits the samples, in order, into that many files named as tacotoolbox names them:
    `<file stem>.0000.part.tortilla`, ... (returned as a list); sample ids run on across them."""
    outer = []
    for i, sample in enumerate(samples):
        columns = {k: v for k, v in sample.items() if k not in ("split", "parts", "shape", "stac")}
        stac = _stac(sample.get("shape", (8, 8))) if sample.get("stac", True) else {}
        inner = [
            {
                "id": part[0],
                "file_format": part[2],
                "data_split": sample["split"],
                "data": part[1],
                **stac,
                **columns,
                **(part[3] if len(part) > 3 else {}),
            }
            for part in sample["parts"]
        ]
        outer.append(
            {
                "id": f"sample_{i}",
                "file_format": "TORTILLA",
                "data_split": sample["split"],
                "data": write_tortilla(None, inner),
                **stac,
                **columns,
            }
        )
    if parts == 1:
        write_tortilla(file, outer)
        return file
    size = -(-len(outer) // parts)
    files = [file.with_suffix(f".{n:04d}.part.tortilla") for n in range(parts)]
    for n, path in enumerate(files):
        write_tortilla(path, outer[n * size : (n + 1) * size], ndatapartitions=parts)
    return files


def _each_split(make):
    """make(split, index, rng) -> one sample dict, PER_SPLIT per split."""
    rng = np.random.default_rng(0)
    return [make(split, i, rng) for split in SPLITS for i in range(PER_SPLIT)]


# ---------------------------------------------------------------------------------------------
# Classification


def write_benv2(root: Path) -> Path:
    """benv2/geobench_benv2.tortilla: per sample an S1 GeoTIFF (VV, VH; float32 dB) then an S2 one
    (12 bands, uint16), 120x120; `labels` = the CORINE class names present."""
    from geobench_v2.datasets import GeoBenchBENV2

    names = list(GeoBenchBENV2.label_names)

    def make(split, i, rng):
        s1 = rng.normal(-15, 4, (2, 120, 120)).astype("float32")
        s2 = rng.integers(0, 4000, (12, 120, 120), dtype="uint16")
        labels = [names[j] for j in sorted(rng.choice(len(names), size=1 + i, replace=False))]
        return {
            "split": split,
            "shape": (120, 120),
            "parts": [("s1", geotiff(s1), "GTiff"), ("s2", geotiff(s2), "GTiff")],
            "labels": labels,
            "lon": 9.0 + i,
            "lat": 49.0,
            "patch_id": f"{split}_{i}",
            "country": "Austria",
            "add_test_split": False,
        }

    return write_samples(root / "benv2" / "geobench_benv2.tortilla", _each_split(make))


def write_treesatai(root: Path) -> Path:
    """treesatai/geobench_treesatai.tortilla: per sample the aerial CIR GeoTIFF (nir, green, blue,
    red; uint8, 0.2 m), then S1 (VV, VH, VV/VH; float32) and S2 (12 bands, uint16), both 6x6 at
    10 m; `species_labels` / `dist_labels` = the genera present and their shares."""
    from geobench_v2.datasets import GeoBenchTreeSatAI

    names = list(GeoBenchTreeSatAI.classes)

    def make(split, i, rng):
        species = [names[j] for j in sorted(rng.choice(len(names), size=1 + i % 2, replace=False))]
        parts = [
            ("aerial", geotiff(rng.integers(0, 255, (4, TILE, TILE), dtype="uint8"), res=0.2), "GTiff"),
            ("s1", geotiff(rng.normal(-8, 3, (3, 6, 6)).astype("float32")), "GTiff"),
            ("s2", geotiff(rng.integers(0, 4000, (12, 6, 6), dtype="uint16")), "GTiff"),
        ]
        return {
            "split": split,
            "shape": (TILE, TILE),
            "parts": parts,
            "species_labels": species,
            "dist_labels": [1.0 / len(species)] * len(species),
        }

    return write_samples(root / "treesatai" / "geobench_treesatai.tortilla", _each_split(make))


# ---------------------------------------------------------------------------------------------
# Segmentation: per sample the image GeoTIFF, then the mask GeoTIFF.


def _image_and_mask(image, mask, ids=("image", "mask")) -> list[dict[str, Any]]:
    """image(rng), mask(rng) -> arrays; ids: the part ids the dataset's builder gives them."""

    def make(split, i, rng):
        return {
            "split": split,
            "shape": (TILE, TILE),
            "parts": [(ids[0], geotiff(image(rng)), "GTiff"), (ids[1], geotiff(mask(rng)), "GTiff")],
        }

    return _each_split(make)


def write_burn_scars(root: Path) -> Path:
    """burn_scars/geobench_burn_scars.tortilla: HLS image (B02 B03 B04 B8A B11 B12, float32
    reflectance) and an int16 mask (0 unburnt, 1 burn scar, -1 no data: the dataset maps it to 2)."""
    samples = _image_and_mask(
        lambda rng: rng.uniform(0, 0.4, (6, TILE, TILE)).astype("float32"),
        lambda rng: rng.integers(-1, 2, (1, TILE, TILE)).astype("int16"),
        ("image", "label"),
    )
    return write_samples(root / "burn_scars" / "geobench_burn_scars.tortilla", samples)


def write_cloudsen12(root: Path) -> Path:
    """cloudsen12/geobench_cloudsen12.tortilla: Sentinel-2 L1C image (12 bands, no B10, uint16)
    and a uint8 mask (0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow)."""
    samples = _image_and_mask(
        lambda rng: rng.integers(0, 10000, (12, TILE, TILE), dtype="uint16"),
        lambda rng: rng.integers(0, 4, (1, TILE, TILE), dtype="uint8"),
    )
    return write_samples(root / "cloudsen12" / "geobench_cloudsen12.tortilla", samples)


def write_flair2(root: Path) -> Path:
    """flair2/geobench_flair2.tortilla: aerial image (red, green, blue, nir, then elevation as a
    fifth band; uint8) and a uint8 mask of FLAIR codes 1-19 (the dataset folds >13 into 13 and
    shifts to 0-12)."""
    samples = _image_and_mask(
        lambda rng: rng.integers(0, 255, (5, TILE, TILE), dtype="uint8"),
        lambda rng: rng.integers(1, 20, (1, TILE, TILE), dtype="uint8"),
        ("aerial", "mask"),
    )
    return write_samples(root / "flair2" / "geobench_flair2.tortilla", samples)


def write_spacenet7(root: Path) -> Path:
    """spacenet7/geobench_spacenet7.tortilla: Planet image (red, green, blue, 4th band; uint8) and
    a uint8 building mask (0/1; the dataset adds 1: classes 1 no-building, 2 building)."""
    samples = _image_and_mask(
        lambda rng: rng.integers(0, 255, (4, TILE, TILE), dtype="uint8"),
        lambda rng: rng.integers(0, 2, (1, TILE, TILE), dtype="uint8"),
        ("images", "mask"),
    )
    return write_samples(root / "spacenet7" / "geobench_spacenet7.tortilla", samples)


# ---------------------------------------------------------------------------------------------
# Multi-temporal


def write_kuro_siwo(root: Path) -> Path:
    """kuro_siwo/geobench_kuro_siwo.tortilla: per sample six GeoTIFFs, in the order the dataset
    reads them: pre_event_1, pre_event_2, post_event (SAR VV, VH; float32), dem (float32), mask
    (uint8: 0 no water, 1 permanent water, 2 flood; remapped to 1-3, 0 = no data) and
    invalid_data (uint8, 1 where valid)."""

    def make(split, i, rng):
        sar = lambda: geotiff(rng.normal(0.05, 0.02, (2, TILE, TILE)).astype("float32"))  # noqa: E731
        parts = [
            ("pre_event_1", sar(), "GTiff"),
            ("pre_event_2", sar(), "GTiff"),
            ("post_event", sar(), "GTiff"),
            ("dem", geotiff(rng.normal(200, 50, (1, TILE, TILE)).astype("float32")), "GTiff"),
            ("mask", geotiff(rng.integers(0, 3, (1, TILE, TILE), dtype="uint8")), "GTiff"),
            ("invalid_data", geotiff(np.ones((1, TILE, TILE), dtype="uint8")), "GTiff"),
        ]
        return {"split": split, "shape": (TILE, TILE), "parts": parts, "actid": 470 + i, "aoiid": 1}

    return write_samples(root / "kuro_siwo" / "geobench_kuro_siwo.tortilla", _each_split(make))


def hdf5(array: np.ndarray, modality: str) -> bytes:
    """An array as HDF5 bytes: dataset "data" (gzip 4, chunked) with the attributes PASTIS's
    builder sets (geobench_v2/generate_benchmark/pastis.py, _convert_pastis_row_to_h5)."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        dset = f.create_dataset("data", data=array, compression="gzip", compression_opts=4, chunks=True)
        dset.attrs["modality"] = modality
        dset.attrs["source_path"] = f"{modality}.npy"
    return buffer.getvalue()


def write_pastis(root: Path) -> list[Path]:
    """pastis/geobench_pastis.000{0,1,2}.part.tortilla (GeoBenchPASTIS.paths): per sample a tortilla
    of five HDF5 parts, in the order the dataset reads them: s2 (T, 10, H, W) int16 reflectance,
    s1a and s1d (T, 3, H, W) float32 (VV, VH, VV/VH in dB), semantic (3, H, W) uint8 (band 0 the
    class: 0 background, 1-18 crops, 19 void) and instance (H, W) parcel ids (0: no parcel), each
    parcel a contiguous field of one crop class. Each part's row has
    its own `dates` (yyyymmdd; none for the targets), the sample's row the S2 dates, which
    __getitem__ reads. The series lengths differ by modality and sample, as in PASTIS (S2 38-61,
    here 6-8; s1d shorter than the 6 dates the task takes, so zero-padded) and the datamodule samples
    num_time_steps of each. Samples go train, validation, test, so each part holds one split
    (the real 0000 part is all train)."""

    def dates(n: int, start: int) -> list[int]:
        return [20180900 + start + 100 * (k // 28) + k % 28 for k in range(n)]

    def make(split, i, rng):
        t2, ta, td = 6 + i, 7, 4
        # Parcels as PASTIS has them: contiguous fields (here a 4 x 4 grid of blocks, ids 1-16, 0 outside any
        # parcel along the grid lines), each of one crop class, which band 0 of the semantic target repeats
        # (bands 1-2, PASTIS's other target layers, are not read).
        block = TILE // 4
        parcels = (1 + np.arange(TILE)[:, None] // block * 4 + np.arange(TILE)[None, :] // block).astype("int32")
        parcels[::block, :] = parcels[:, ::block] = 0
        crops = np.concatenate([[0], rng.integers(1, 19, 16)])
        semantic = np.stack([crops[parcels], rng.integers(0, 20, (TILE, TILE)), rng.integers(0, 20, (TILE, TILE))])
        semantic = semantic.astype("uint8")
        parts = [
            (
                "s2",
                hdf5(rng.integers(0, 6000, (t2, 10, TILE, TILE), dtype="int16"), "s2"),
                "HDF5",
                {"dates": dates(t2, 1)},
            ),
            (
                "s1a",
                hdf5(rng.normal(-12, 3, (ta, 3, TILE, TILE)).astype("float32"), "s1a"),
                "HDF5",
                {"dates": dates(ta, 2)},
            ),
            (
                "s1d",
                hdf5(rng.normal(-12, 3, (td, 3, TILE, TILE)).astype("float32"), "s1d"),
                "HDF5",
                {"dates": dates(td, 3)},
            ),
            ("semantic", hdf5(semantic, "semantic"), "HDF5", {"dates": []}),
            ("instance", hdf5(parcels, "instance"), "HDF5", {"dates": []}),
        ]
        return {
            "split": split,
            "stac": False,
            "parts": parts,
            "dates": dates(t2, 1),
            "add_test_split": False,
            "tile": "t31tfj",
            "lon": 5.0 + i,
            "lat": 45.0,
            "patch_id": f"{10000 + i}",
        }

    return write_samples(root / "pastis" / "geobench_pastis.tortilla", _each_split(make), parts=3)


WRITERS = {
    "benv2": write_benv2,
    "treesatai": write_treesatai,
    "burn_scars": write_burn_scars,
    "cloudsen12": write_cloudsen12,
    "flair2": write_flair2,
    "spacenet7": write_spacenet7,
    "kuro_siwo": write_kuro_siwo,
    "pastis": write_pastis,
}
