"""GEO-Bench-2 datasets in their real on-disk format (pixelwise): writers built on tests/formats/geobench_v2.py's
tortilla and GeoTIFF helpers. WRITERS: dataset key -> writer(root)."""

from __future__ import annotations

WRITERS: dict = {}
