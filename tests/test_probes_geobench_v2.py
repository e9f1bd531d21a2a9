"""The probes on GEO-Bench-2's own datamodules (geobench_v2, read through TerraTorch's proxies, on the
tasks' real-format tortilla fixtures): a multi-label and a segmentation dataset tuned and repeated under
protocol=linear_probe, a classification one under protocol=knn. The
features come from the wrapped datamodule's splits (its own normalisation, no augmentation), each split is
embedded once per cell, and every repeat tests on the test split with the split guard."""

from __future__ import annotations

import pytest

from tests.formats.geobench_v2_all import WRITERS
from tests.helpers import read_csv

pytestmark = [pytest.mark.slow, pytest.mark.duration(30)]

# A multi-label and a segmentation dataset under the linear probe, a classification one under knn.
TASKS = {"linear_probe": ["benv2", "burn_scars"], "knn": ["so2sat"]}


@pytest.mark.parametrize("protocol", sorted(TASKS))
def test_probes_run_on_geobench_v2_datamodules(protocol, run_cli, tmp_path):
    root = tmp_path / "geobench_v2"
    tasks = TASKS[protocol]
    for key in tasks:
        WRITERS[key](root)
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    result = run_cli(
        "-m",
        "task=" + ",".join(f"gb2_{k}" for k in tasks),
        f"protocol={protocol}",
        "model=prithvi_tiny",
        "model.model_args.backbone_pretrained=false",
        *(["probe.epochs=5"] if protocol == "linear_probe" else []),
        "task.image_size=64",
        "task.datamodule.num_workers=0",
        "hparams.batch_size=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.repeats=1",
        "mlflow.enabled=false",
        f"embeddings.cache_dir={cache}",
        f"hydra.sweep.dir={sweep}",
        env={"GEO_BENCH_V2_DIR": str(root), "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials, repeats = read_csv(sweep / "results.csv"), read_csv(sweep / "repeats.csv")
    assert sorted({r["dataset"] for r in trials}) == sorted(tasks)
    assert {r["state"] for r in trials + repeats} == {"COMPLETE"} and len(repeats) == len(tasks)
    assert {r["frozen_or_full_ft"] for r in trials + repeats} == {protocol}
    for task in tasks:
        cell = [r for r in trials if r["dataset"] == task]
        again = [r for r in repeats if r["dataset"] == task]
        # train and val embedded by the first trial, read by the second. The repeat's seed draws another
        # random encoder (pretrained weights would not change with it), so its three splits are new entries.
        assert sorted(int(r["embeddings_built"]) for r in cell) == [0, 2], task
        assert [int(r["embeddings_built"]) for r in again] == [3], task
        assert again[0]["test_value"] and float(again[0]["test_value"]) == float(again[0]["test_value"])  # not NaN
    assert len([p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 5 * len(tasks)
