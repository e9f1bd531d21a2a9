"""The HLS tasks (Sen1Floods11, HLS burn scars, multi-temporal crop classification) read their real
on-disk format (GeoTIFF chips, named and split as published, written by tests/formats/hls.py)
through TerraTorch's own datamodules, and train, validate and test one step."""

from __future__ import annotations

import pytest

from tests.formats.check import check_task_reads
from tests.formats.hls import ENV_VARS, WRITERS


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(WRITERS))
def test_hls_task_reads_its_format(task, tmp_path, monkeypatch, compose_cfg):
    root = WRITERS[task](tmp_path / task)
    monkeypatch.setenv(ENV_VARS[task], str(root))
    # The written tiles are 64x64 (the real ones 512 or 224); in-process loading keeps it to seconds.
    check_task_reads(compose_cfg, task, "task.image_size=64", "task.datamodule.num_workers=0")
