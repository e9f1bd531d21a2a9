"""Tiny GEO-Bench v1 datasets in the layout TerraTorch 1.2.11's M*NonGeo datasets read
(terratorch/datasets/m_*.py), under <root>/{classification_v1.0,segmentation_v1.0}/<folder>/:

- one HDF5 file per sample, `<id>.hdf5`, holding one 2-D dataset per band, in the order the
  dataset's `all_band_names` lists them once the keys are sorted (GEO-Bench names them
  "01 - Coastal aerosol", "02 - Blue", ...; m-nz-cattle's carry their date, "red_2019-03-01");
- segmentation: the mask as the dataset "label";
- classification: the label in the file's attrs["pickle"] (repr of a pickled {"label": k}) for
  m-brick-kiln, m-pv4ger, m-so2sat and m-forestnet; in label_map.json ({class: [ids]}) for
  m-eurosat; multilabel vectors in label_stats.json ({id: [0/1 x 43]}) for m-bigearthnet;
- `{partition}_partition.json`: {"train": [ids], "valid": [ids], "test": [ids]} for `default` and
  `0.10x_train` (whose train list is a subset).
Tiles are 32x32 (the tasks resize to task.image_size); the real ones are 32 to 500 px.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np

PER_SPLIT = 3  # samples in each split; the 0.10x_train partition keeps the first train sample
SIZE = 32

S2 = [
    "COASTAL_AEROSOL",
    "BLUE",
    "GREEN",
    "RED",
    "RED_EDGE_1",
    "RED_EDGE_2",
    "RED_EDGE_3",
    "NIR_BROAD",
    "NIR_NARROW",
    "WATER_VAPOR",
    "CIRRUS",
    "SWIR_1",
    "SWIR_2",
]
SO2SAT = [
    "VH_REAL",
    "BLUE",
    "VH_IMAGINARY",
    "GREEN",
    "VV_REAL",
    "RED",
    "VV_IMAGINARY",
    "VH_LEE_FILTERED",
    "RED_EDGE_1",
    "VV_LEE_FILTERED",
    "RED_EDGE_2",
    "VH_LEE_FILTERED_REAL",
    "RED_EDGE_3",
    "NIR_BROAD",
    "VV_LEE_FILTERED_IMAGINARY",
    "NIR_NARROW",
    "SWIR_1",
    "SWIR_2",
]
# task -> (split dir, folder, bands in all_band_names order, classes, how the label is stored)
DATASETS = {
    "eurosat": ("classification_v1.0", "m-eurosat", S2, 10, "label_map"),
    "brick_kiln": ("classification_v1.0", "m-brick-kiln", S2, 2, "attrs"),
    "pv4ger": ("classification_v1.0", "m-pv4ger", ["BLUE", "GREEN", "RED"], 2, "attrs"),
    "so2sat": ("classification_v1.0", "m-so2sat", SO2SAT, 17, "attrs"),
    "big_earth_net": ("classification_v1.0", "m-bigearthnet", [b for b in S2 if b != "CIRRUS"], 43, "label_stats"),
    "forestnet": (
        "classification_v1.0",
        "m-forestnet",
        ["BLUE", "GREEN", "RED", "NIR", "SWIR_1", "SWIR_2"],
        12,
        "attrs",
    ),
    "cashew": (
        "segmentation_v1.0",
        "m-cashew-plant",
        [b for b in S2 if b != "CIRRUS"] + ["CLOUD_PROBABILITY"],
        7,
        "mask",
    ),
    "chesapeake": ("segmentation_v1.0", "m-chesapeake", ["BLUE", "GREEN", "NIR", "RED"], 7, "mask"),
    "neontree": ("segmentation_v1.0", "m-NeonTree", ["BLUE", "CANOPY_HEIGHT_MODEL", "GREEN", "NEON", "RED"], 2, "mask"),
    "nz_cattle": ("segmentation_v1.0", "m-nz-cattle", ["BLUE", "GREEN", "RED"], 2, "dated_mask"),
    "pv4ger_seg": ("segmentation_v1.0", "m-pv4ger-seg", ["BLUE", "GREEN", "RED"], 2, "mask"),
    "sa_crop_type": (
        "segmentation_v1.0",
        "m-SA-crop-type",
        [b for b in S2 if b != "CIRRUS"] + ["CLOUD_PROBABILITY"],
        10,
        "mask",
    ),
}


def write_geobench_v1(root: Path, tasks: list[str] | None = None) -> Path:
    """Write the datasets of these tasks (default: all 12) under root; returns root ($GEO_BENCH_DIR)."""
    rng = np.random.default_rng(0)
    for task in tasks or list(DATASETS):
        split_dir, folder, bands, classes, label_kind = DATASETS[task]
        directory = root / split_dir / folder
        directory.mkdir(parents=True, exist_ok=True)
        ids = {split: [f"{split}_{i:03d}" for i in range(PER_SPLIT)] for split in ("train", "valid", "test")}
        labels = {}
        for sample_id in (i for split in ids.values() for i in split):
            label = int(rng.integers(classes))
            labels[sample_id] = label
            with h5py.File(directory / f"{sample_id}.hdf5", "w") as h5:
                for index, band in enumerate(bands):
                    key = f"{band.lower()}_2019-03-01" if label_kind == "dated_mask" else f"{index + 1:02d} - {band}"
                    h5.create_dataset(key, data=rng.uniform(0, 3000, (SIZE, SIZE)).astype(np.float32))
                if label_kind in ("mask", "dated_mask"):
                    h5.create_dataset("label", data=rng.integers(0, classes, (SIZE, SIZE)).astype(np.uint8))
                elif label_kind == "attrs":
                    h5.attrs["pickle"] = str(pickle.dumps({"label": label}))
        if label_kind == "label_map":
            label_map = {f"class_{c}": [i for i, k in labels.items() if k == c] for c in range(classes)}
            (directory / "label_map.json").write_text(json.dumps(label_map))
        elif label_kind == "label_stats":
            vectors = {i: [int(v) for v in rng.integers(0, 2, classes)] for i in labels}
            (directory / "label_stats.json").write_text(json.dumps(vectors))
        (directory / "default_partition.json").write_text(json.dumps(ids))
        (directory / "0.10x_train_partition.json").write_text(json.dumps({**ids, "train": ids["train"][:1]}))
    return root
