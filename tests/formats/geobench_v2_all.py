"""Every GEO-Bench-2 fixture writer, by the leaderboard's dataset key (the task is conf/task/gb2_<key>.yaml)."""

from __future__ import annotations

from tests.formats import geobench_v2, geobench_v2_detection, geobench_v2_pixelwise, geobench_v2_temporal

WRITERS = {
    **geobench_v2.WRITERS,
    **geobench_v2_pixelwise.WRITERS,
    **geobench_v2_temporal.WRITERS,
    **geobench_v2_detection.WRITERS,
}
