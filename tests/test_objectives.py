"""Multi-objective bench tasks: task.metric as a list, with the cost metrics train() measures."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.objectives import parse_objectives
from tests.helpers import read_csv


def test_a_bench_cell_trading_miou_against_parameters_has_a_front_of_two(run_cli, tmp_path):
    """Two decoder widths of one model on the synthetic segmentation task: the wide decoder learns
    more in 2 epochs (mIoU 0.45 against 0.40 here), the narrow one has fewer parameters, so neither
    dominates the other."""
    from mlflow import MlflowClient

    sweep = tmp_path / "sweep"
    result = run_cli("-m", "task=synthetic_seg", "task.metric=[val/mIoU,cost/params_M]",
                     "task.direction=[maximize,minimize]", "search_space=none", "hparams.lr=3e-4",
                     "+hparams.model_args.decoder_channels=choice(16,256)", "hydra/sweeper/sampler=grid",
                     "task.max_epochs=2", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pruning is off for the multi-objective cell(s) default" in result.stdout + result.stderr
    rows = {int(r["hparams.model_args.decoder_channels"]): r for r in read_csv(sweep / "results.csv")}
    assert sorted(rows) == [16, 256] and {r["state"] for r in rows.values()} == {"COMPLETE"}
    narrow, wide = rows[16], rows[256]
    assert float(narrow["value_1"]) < float(wide["value_1"])  # parameters, in millions
    assert float(wide["value_0"]) > float(narrow["value_0"])  # mIoU
    front = read_csv(sweep / "best.csv")
    assert sorted(int(r["hparams.model_args.decoder_channels"]) for r in front) == [16, 256]
    assert {r["metric"] for r in front} == {"val/mIoU,cost/params_M"}
    # What the trial logged agrees: its mIoU curve and its parameter count are metrics of its run.
    client = MlflowClient(f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
    for row in rows.values():
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.metrics["cost/params_M"] == pytest.approx(float(row["value_1"]))
        best_miou = max(m.value for m in client.get_metric_history(run.info.run_id, "val/mIoU"))
        assert best_miou == pytest.approx(float(row["value_0"]))
    (cell,) = [r for r in client.search_runs([run.info.experiment_id]) if r.data.tags.get("bench.level") == "cell"]
    table = json.loads(open(client.download_artifacts(cell.info.run_id, "pareto_front.json", str(tmp_path))).read())
    assert table["columns"][:3] == ["trial", "val/mIoU", "cost/params_M"] and len(table["data"]) == 2


def test_throughput_is_measured_on_the_validation_batches(compose_cfg, tmp_path):
    from bench.train import train

    values = train(compose_cfg("task.metric=[val/mIoU,cost/val_images_per_s]", "task.direction=[maximize,maximize]",
                               "task.max_epochs=1", f"output_dir={tmp_path}"))
    assert len(values) == 2 and all(math.isfinite(v) for v in values) and values[1] > 0


@pytest.mark.parametrize("metric, direction, words", [
    (["val/mIoU", "cost/params_M"], ["maximize"], "task.metric lists 2 metrics (val/mIoU, cost/params_M) but task.direction 1"),
    (["val/mIoU", "cost/flops"], ["maximize", "minimize"], "cost/flops, which bench does not measure"),
    (["cost/params_M"], ["minimize"], "lists only costs"),
    (["val/mIoU", "cost/params_M"], ["maximize", "smaller"], "task.direction has 'smaller'"),
])
def test_bad_objective_lists_get_a_sentence(metric, direction, words):
    with pytest.raises(ConfigError, match=".*") as caught:
        parse_objectives(OmegaConf.create(metric), OmegaConf.create(direction), "synthetic_seg")
    assert words in str(caught.value)
