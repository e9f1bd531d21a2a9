"""The 12 GEO-Bench v1 tasks read their real on-disk format (HDF5 samples, partition JSON, label
files: tests/formats/geobench_v1.py) through TerraTorch's own datamodules, and train, validate and
test one step; a partition picks its own samples."""

from __future__ import annotations

import pytest

from tests.formats.check import check_task_reads, load_batch
from tests.formats.geobench_v1 import DATASETS, PER_SPLIT, write_geobench_v1

pytestmark = pytest.mark.duration(50)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(DATASETS))
def test_geobench_v1_task_reads_its_format(task, tmp_path, monkeypatch, compose_cfg):
    monkeypatch.setenv("GEO_BENCH_DIR", str(write_geobench_v1(tmp_path / "geobench", [task])))
    # Small tiles and in-process loading keep it to seconds; the reading path is the same.
    check_task_reads(compose_cfg, task, "task.image_size=64", "task.datamodule.num_workers=0")


def test_a_partition_selects_its_own_training_samples(tmp_path, monkeypatch, compose_cfg):
    monkeypatch.setenv("GEO_BENCH_DIR", str(write_geobench_v1(tmp_path / "geobench", ["eurosat"])))
    sizes = {}
    for partition in ("default", "0.10x_train"):
        datamodule, _ = load_batch(
            compose_cfg(
                "task=eurosat",
                f"task.partition={partition}",
                "hparams.batch_size=1",
                "task.datamodule.num_workers=0",
                "task.image_size=64",
            )
        )
        sizes[partition] = len(datamodule.train_dataset)
    assert sizes == {"default": PER_SPLIT, "0.10x_train": 1}
