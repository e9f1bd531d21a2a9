"""GEO-Bench-2 tasks read their real on-disk format (tortilla files of GeoTIFFs, written by
tests/formats/geobench_v2*.py) through geobench_v2's datamodules and TerraTorch's proxies: a batch has the
task's bands, shape and labels. tests/test_geobench_v2_pipeline.py trains, validates and tests every one of them
(two models, a tuning trial and two seed repeats each), so the step is not trained again here.

geobench_v2 (pip `geobenchv2`) is a dependency of these tasks: its absence fails here, not skips.
"""

from __future__ import annotations

import pytest

from tests.formats.check import check_task_reads
from tests.formats.geobench_v2_all import WRITERS

pytestmark = pytest.mark.duration(20)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(WRITERS))
def test_geobench_v2_task_reads_its_format(key, tmp_path, monkeypatch, compose_cfg):
    import geobench_v2  # noqa: F401  (an ImportError fails the test: the catalog needs it)

    root = tmp_path / "geobench_v2"
    WRITERS[key](root)
    monkeypatch.setenv("GEO_BENCH_V2_DIR", str(root))
    # Small tiles and in-process loading keep it to seconds; the reading path is the same.
    check_task_reads(compose_cfg, f"gb2_{key}", "task.image_size=64", "task.datamodule.num_workers=0", train_step=False)
