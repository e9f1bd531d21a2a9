"""GEO-Bench-2 datasets in their real on-disk format (detection): writers built on tests/formats/geobench_v2.py's
tortilla and GeoTIFF helpers. WRITERS: dataset key -> writer(root).

Each detection sample is a tortilla of two parts, as the builders (geobench_v2/generate_benchmark/<key>.py) write
them: "image" (GTiff) then "annotations" (GeoParquet for EverWatch, HDF5 for NZCattle and Substation), the
dataset's __getitem__ reading part 0 as the image and part 1 as the boxes. Boxes are drawn inside the tile and at
least 8 px wide, so the datamodule's resize keeps them non-empty."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from tests.formats.geobench_v2 import TILE, _each_split, geotiff, write_pastis, write_samples

# Boxes per sample: a few, of varying count.
BOXES = (1, 2, 3)
# Substation's masks are drawn at 228x228 whatever the image (geobench_v2.datasets.substation.polygon_to_mask's
# default size), so the image must be 228 px too, as the real tiles are; anything smaller would not line up.
SUBSTATION_TILE = 228


def _boxes(rng, n: int, side: int) -> list[list[float]]:
    """n boxes as [x, y, w, h] (COCO's xywh, which the NZCattle and Substation builders store)."""
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(8, side // 3, 2))
        x, y = int(rng.integers(0, side - w)), int(rng.integers(0, side - h))
        out.append([x, y, w, h])
    return out


def _annotation_hdf5(annotation: dict) -> bytes:
    """The builders' HDF5 annotation file: no dataset, one attribute "annotation" holding the JSON."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["annotation"] = json.dumps(annotation)
    return buffer.getvalue()


def _sample(split: str, image: np.ndarray, annotations: tuple[bytes, str], i: int) -> dict:
    return {
        "split": split,
        "shape": image.shape[-2:],
        "lon": 10.0 + i,
        "lat": 50.0,
        "parts": [("image", geotiff(image), "GTiff"), ("annotations", *annotations)],
    }


def write_everwatch(root: Path) -> Path:
    """everwatch/geobench_everwatch.tortilla: per sample an RGB uint8 GeoTIFF (real tiles 1500 px, drone
    imagery of wading birds) and a GeoParquet of its boxes: columns geotiff_path, label (the species name, which
    GeoBenchEverWatch maps to its class index), xmin, ymin, xmax, ymax (pixels),
    split, class_id, and a box geometry (EPSG:4326), as generate_benchmark/everwatch.py's
    process_image_annotations writes them."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    # No missing label: the reader maps None to "Unknown White", but a missing string reads back from Parquet
    # as NaN, which it does not (KeyError: nan).
    species = ["White Ibis", "Great Egret", "Great Blue Heron", "Snowy Egret", "Wood Stork", "Unknown White"]

    def make(split, i, rng):
        rows = [
            {
                "geotiff_path": f"{split}_{i}.tif",
                "label": species[int(rng.integers(0, len(species)))],
                "xmin": x,
                "ymin": y,
                "xmax": x + w,
                "ymax": y + h,
                "split": split,
            }
            for x, y, w, h in _boxes(rng, BOXES[i], TILE)
        ]
        frame = pd.DataFrame(rows)
        frame["class_id"] = frame["label"].map({s: k for k, s in enumerate(species)})
        gdf = gpd.GeoDataFrame(
            frame, geometry=[box(r["xmin"], r["ymin"], r["xmax"], r["ymax"]) for r in rows], crs="EPSG:4326"
        )
        buffer = io.BytesIO()
        gdf.to_parquet(buffer)
        image = rng.integers(0, 256, (3, TILE, TILE), dtype="uint8")
        return _sample(split, image, (buffer.getvalue(), "GeoParquet"), i)

    return write_samples(root / "everwatch" / "geobench_everwatch.tortilla", _each_split(make))


def write_nzcattle(root: Path) -> Path:
    """nzcattle/geobench_nzcattle.tortilla: per sample an RGB uint8 GeoTIFF (real tiles 500 px of 0.1 m aerial
    imagery) and an HDF5 whose attribute "annotation" is JSON {"boxes": [{category_id (1: cattle), bbox [x, y,
    w, h], bbox_mode "xywh"}], "image_size": [H, W]} (generate_benchmark/nzcattle.py)."""

    def make(split, i, rng):
        boxes = [{"category_id": 1, "bbox": b, "bbox_mode": "xywh"} for b in _boxes(rng, BOXES[i], TILE)]
        annotation = _annotation_hdf5({"boxes": boxes, "image_size": [TILE, TILE]})
        image = rng.integers(0, 256, (3, TILE, TILE), dtype="uint8")
        return _sample(split, image, (annotation, "HDF5"), i)

    return write_samples(root / "nzcattle" / "geobench_nzcattle.tortilla", _each_split(make))


def write_substation(root: Path) -> Path:
    """substation/geobench_substation.tortilla: per sample a 13-band Sentinel-2 int16 GeoTIFF (B01..B12 with
    B10, the time series' mean, 228 px) and an HDF5 whose attribute "annotation" is JSON {"sample_annotations":
    [{category_id (1: power station), bbox [x, y, w, h], bbox_mode "xywh", mask: COCO polygons [[x1, y1, ...]]}],
    "image_size": [H, W]} (generate_benchmark/substation.py). The polygon here is the box's own outline."""

    def make(split, i, rng):
        annotations = []
        for x, y, w, h in _boxes(rng, BOXES[i], SUBSTATION_TILE):
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append({"category_id": 1, "bbox": [x, y, w, h], "bbox_mode": "xywh", "mask": [polygon]})
        annotation = _annotation_hdf5(
            {"sample_annotations": annotations, "image_size": [SUBSTATION_TILE, SUBSTATION_TILE]}
        )
        image = rng.integers(0, 4000, (13, SUBSTATION_TILE, SUBSTATION_TILE), dtype="int16")
        return _sample(split, image, (annotation, "HDF5"), i)

    return write_samples(root / "substation" / "geobench_substation.tortilla", _each_split(make))


WRITERS = {
    "everwatch": write_everwatch,
    "nzcattle": write_nzcattle,
    "substation": write_substation,
    # The same PASTIS files as the semantic task (its instance part holds the parcel ids), read as instances.
    "pastis_r": write_pastis,
}
