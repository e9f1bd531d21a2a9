"""The HLS tasks' datasets in their real on-disk layout: GeoTIFF chips named, typed and split as the
published datasets are, read by TerraTorch's own datamodules (conf/task/{sen1floods11,
hls_burn_scars,crop_classification}.yaml).

Where each layout was read from:

Sen1Floods11 (hand-labelled), `gsutil -m rsync -r gs://sen1floods11/v1.1 <root>/v1.1`
    v1.1/data/flood_events/HandLabeled/S2Hand/<Country>_<id>_S2Hand.tif      13 bands B1..B12 with
        B8A after B8 (TerraTorch's Sen1Floods11NonGeo.all_band_names order), integer reflectance x 1e4
    v1.1/data/flood_events/HandLabeled/LabelHand/<Country>_<id>_LabelHand.tif  1 band int16:
        1 water, 0 not water, -1 no data
    v1.1/splits/flood_handlabeled/flood_{train,valid,test,bolivia}_data.csv  the bucket's split
        files: one "<id>_S1Hand.tif,<id>_LabelHand.tif" row per chip, no header
    v1.1/splits/flood_handlabeled/flood_{train,valid,test}_data.txt  what TerraTorch reads instead
        (terratorch/datasets/sen1floods11.py: one chip id per line, matched as a substring of the
        file names); made from the CSVs as the task's how_to_get says (first column, minus
        `_S1Hand.tif`)
    Sources: the dataset's docs (github.com/cloudtostreet/Sen1Floods11 docs/README.md), PANGAEA's
    reader of the bucket (pangaea/datasets/sen1floods11.py) for the CSV rows, TerraTorch 1.2.11's
    Sen1Floods11NonGeo for the paths, globs and .txt split files.

HLS burn scars, Hugging Face dataset ibm-nasa-geospatial/hls_burn_scars (hls_burn_scars.tar.gz)
    training/subsetted_512x512_HLS.S30.T<tile>.<yyyyddd>.v1.4_merged.tif   6 bands (B02 B03 B04
        B8A B11 B12) float32 reflectance, uncompressed (6,295,168 bytes for 512x512)
    training/subsetted_512x512_HLS.S30.T<tile>.<yyyyddd>.v1.4.mask.tif     1 band int16: 1 burn
        scar, 0 not burned, -1 no data (525,272 bytes)
    validation/... the same; there is no test split (TerraTorch tests on validation)
    Sources: the dataset's card and loading script, TerraTorch's FireScarsNonGeo (globs
    `*_merged.tif` / `*.mask.tif` and its file-name regex), member sizes of the published tarball.

Multi-temporal crop classification, Hugging Face dataset
ibm-nasa-geospatial/multi-temporal-crop-classification (training_chips.tgz, validation_chips.tgz)
    {training,validation}_chips/chip_<row>_<col>_merged.tif  18 bands int16 (6 HLS bands x 3 dates,
        date-major: B02 B03 B04 B8A B11 B12 of date 1, then date 2, then date 3), 224x224 at 30 m
        in EPSG:5070, pixel-interleaved, uncompressed (1,808,174 bytes)
    {training,validation}_chips/chip_<row>_<col>.mask.tif    1 band uint8 with the CDL colour
        map: 0 no data, 1..13 the classes
    training_data.txt, validation_data.txt   one chip id (chip_<row>_<col>) per line, at the root
    The archives also carry macOS AppleDouble twins (`._chip_..._merged.tif`); one is written here:
    TerraTorch's glob skips dot files.
    Sources: the dataset card, its generation pipeline (github.com/easierdata/
    multi-temporal-crop-classification-training-data, process_chips.py: int16 HLS chips clipped
    at 0, uint8 masks with the CDL colour map), TerraTorch's MultiTemporalCropClassification.

The tiles here are 64x64 (the real ones are 512 or 224): the readers do not depend on the size and
a ViT with patch 16 takes it as it is. Three samples per split (five in the training split of the
two datasets that hold their validation samples out of it, so four train: the train loader drops
the last incomplete batch of 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 64
PER_SPLIT = 3


def _write_tif(
    path: Path,
    array: np.ndarray,
    *,
    crs: int,
    res: float,
    origin: tuple[float, float],
    nodata: float | None = None,
    colormap: dict | None = None,
    interleave: str = "band",
) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=rasterio.crs.CRS.from_epsg(crs),
        transform=from_origin(origin[0], origin[1], res, res),
        nodata=nodata,
        interleave=interleave,
        **({"photometric": "palette"} if colormap is not None else {}),
    ) as dst:
        if colormap is not None:
            dst.write_colormap(1, colormap)
        dst.write(array)


def _label(rng: np.random.Generator, values: list[int], nodata: int | None) -> np.ndarray:
    """Blocks of each class (every class present), plus a strip of no data."""
    label = rng.choice(values, size=(TILE // 8, TILE // 8)).repeat(8, 0).repeat(8, 1)
    label[0, : len(values)] = values
    if nodata is not None:
        label[-2:, :] = nodata
    return label


def write_sen1floods11(root: Path) -> Path:
    """Sen1Floods11 v1.1, hand-labelled part, as `gs://sen1floods11/v1.1` holds it plus the .txt
    split files TerraTorch reads."""
    root = Path(root)
    rng = np.random.default_rng(11)
    hand = root / "v1.1" / "data" / "flood_events" / "HandLabeled"
    splits_dir = root / "v1.1" / "splits" / "flood_handlabeled"
    splits_dir.mkdir(parents=True, exist_ok=True)
    # Real chip ids: <Country>_<number>; EPSG:4326 at ~10 m.
    chips = {
        "train": ["Bolivia_103757", "Ghana_103272", "India_1018327"],
        "valid": ["Mekong_1111068", "Paraguay_1029042", "Spain_7370579"],
        "test": ["Sri-Lanka_101973", "USA_1010394", "Nigeria_143329"],
        "bolivia": [],
    }
    for n, (split, ids) in enumerate(chips.items()):
        rows = [f"{cid}_S1Hand.tif,{cid}_LabelHand.tif\n" for cid in ids]
        (splits_dir / f"flood_{split}_data.csv").write_text("".join(rows))
        if split != "bolivia":
            # What TerraTorch reads: the chip ids, as the task's how_to_get makes them.
            (splits_dir / f"flood_{split}_data.txt").write_text("".join(f"{cid}\n" for cid in ids))
        for k, cid in enumerate(ids):
            origin = (-60.0 + 3 * n + k, 10.0 + k)
            image = rng.integers(0, 4000, size=(13, TILE, TILE), dtype=np.int16)
            _write_tif(hand / "S2Hand" / f"{cid}_S2Hand.tif", image, crs=4326, res=8.983e-05, origin=origin)
            label = _label(rng, [0, 1], nodata=-1).astype(np.int16)
            _write_tif(hand / "LabelHand" / f"{cid}_LabelHand.tif", label[None], crs=4326, res=8.983e-05, origin=origin)
    return root


def write_hls_burn_scars(root: Path) -> Path:
    """HLS burn scars as hls_burn_scars.tar.gz unpacks: training/ and validation/ scenes."""
    root = Path(root)
    rng = np.random.default_rng(7)
    scenes = {
        "training": ["T10SEH.2018190", "T11SPV.2020236", "T13TBE.2018220", "T10SFH.2019181", "T11SKB.2021210"],
        "validation": ["T10TFM.2018110", "T12STG.2018186", "T15SWA.2020109"],
    }
    for split, keys in scenes.items():
        for k, key in enumerate(keys):
            stem = f"subsetted_512x512_HLS.S30.{key}.v1.4"
            origin = (500000.0 + 30 * TILE * k, 4200000.0)
            image = rng.uniform(0.0, 0.4, size=(6, TILE, TILE)).astype(np.float32)
            _write_tif(root / split / f"{stem}_merged.tif", image, crs=32610, res=30.0, origin=origin)
            label = _label(rng, [0, 1], nodata=-1).astype(np.int16)
            _write_tif(root / split / f"{stem}.mask.tif", label[None], crs=32610, res=30.0, origin=origin)
    return root


# USDA CDL's colour map, abbreviated to the 14 values the masks hold.
_CDL_COLORS = {
    0: (0, 0, 0, 0),
    1: (155, 155, 155, 255),
    2: (147, 204, 147, 255),
    3: (255, 211, 0, 255),
    4: (38, 112, 0, 255),
    5: (128, 179, 179, 255),
    6: (156, 156, 156, 255),
    7: (77, 112, 163, 255),
    8: (168, 112, 0, 255),
    9: (255, 168, 226, 255),
    10: (191, 191, 122, 255),
    11: (255, 38, 38, 255),
    12: (255, 158, 11, 255),
    13: (112, 168, 0, 255),
}


def write_crop_classification(root: Path) -> Path:
    """Multi-temporal crop classification as its archives unpack beside the split lists."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    chips = {
        "training": ["chip_000_009", "chip_012_345", "chip_143_480", "chip_033_128", "chip_099_310"],
        "validation": ["chip_002_017", "chip_087_201", "chip_210_066"],
    }
    for split, ids in chips.items():
        (root / f"{split}_data.txt").write_text("".join(f"{cid}\n" for cid in ids))
        for k, cid in enumerate(ids):
            origin = (-1000000.0 + 30 * TILE * k, 2000000.0)
            # 3 dates x 6 bands, date-major; reflectance x 1e4 clipped at 0, as the pipeline wrote them.
            image = rng.integers(0, 5000, size=(18, TILE, TILE), dtype=np.int16)
            _write_tif(
                root / f"{split}_chips" / f"{cid}_merged.tif",
                image,
                crs=5070,
                res=30.0,
                origin=origin,
                nodata=-9999,
                interleave="pixel",
            )
            label = _label(rng, list(range(1, 14)), nodata=0).astype(np.uint8)
            _write_tif(
                root / f"{split}_chips" / f"{cid}.mask.tif",
                label[None],
                crs=5070,
                res=30.0,
                origin=origin,
                colormap=_CDL_COLORS,
            )
    # A macOS AppleDouble twin, as in the published archive: not a GeoTIFF, never read.
    (root / "validation_chips" / f"._{chips['validation'][0]}_merged.tif").write_bytes(b"\x00\x05\x16\x07")
    return root


WRITERS = {
    "sen1floods11": write_sen1floods11,
    "hls_burn_scars": write_hls_burn_scars,
    "crop_classification": write_crop_classification,
}
# The env var each task's dataset.root comes from.
ENV_VARS = {
    "sen1floods11": "SEN1FLOODS11_DIR",
    "hls_burn_scars": "HLS_BURN_SCARS_DIR",
    "crop_classification": "CROP_CLASSIFICATION_DIR",
}
