"""Multi-objective bench tasks: task.metric as a list, with the cost metrics train() measures."""

from __future__ import annotations

import json
import math

import pytest

from bench.errors import ConfigError
from bench.preflight import check_cell
from bench.spec import build_spec
from tests.helpers import read_csv

pytestmark = pytest.mark.duration(75)


@pytest.mark.slow
def test_a_bench_cell_trading_miou_against_parameters_has_a_front_of_two(run_cli, tmp_path):
    """Two decoder widths of one model on the synthetic segmentation task: the wide decoder learns
    more in 2 epochs (mIoU 0.45 against 0.40 here), the narrow one has fewer parameters, so neither
    dominates the other."""
    from mlflow import MlflowClient

    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=synthetic_seg",
        "task.metric=[val/mIoU,cost/params_M]",
        "task.direction=[maximize,minimize]",
        "search_space=none",
        "hparams.lr=3e-4",
        "+hparams.model_args.decoder_channels=choice(16,256)",
        "hydra/sweeper/sampler=grid",
        "task.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pruning is off for the multi-objective cell(s) task=synthetic_seg,model=prithvi_tiny" in (
        result.stdout + result.stderr
    )
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


# A few batches per epoch: what is checked is which value is returned, not how well it learns.
FAST = ["+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2"]
MIOU_AND_PARAMS = ["task.metric=[val/mIoU,cost/params_M]", "task.direction=[maximize,minimize]"]


def _logged(output_dir) -> list[dict[str, str]]:
    """The rows the job's CSVLogger wrote, resumed runs' included, in order."""
    return [row for path in sorted(output_dir.glob("metrics/version_*/metrics.csv")) for row in read_csv(path)]


def _per_epoch(rows: list[dict[str, str]], name: str) -> dict[int, float]:
    return {int(r["epoch"]): float(r[name]) for r in rows if r.get(name)}


@pytest.mark.slow
def test_miou_and_parameters_are_the_best_epochs_score_and_the_models_size(compose_cfg, tmp_path):
    from terratorch.tasks import SemanticSegmentationTask

    from bench.train import train

    narrow_out, wide_out = tmp_path / "narrow", tmp_path / "wide"
    narrow = train(
        compose_cfg(
            *MIOU_AND_PARAMS,
            *FAST,
            "task.max_epochs=2",
            "+hparams.model_args.decoder_channels=64",
            f"output_dir={narrow_out}",
        )
    )
    assert isinstance(narrow, list) and len(narrow) == 2 and all(math.isfinite(v) for v in narrow)
    rows = _logged(narrow_out)
    assert len(_per_epoch(rows, "val/mIoU")) == 2
    assert narrow[0] == pytest.approx(max(_per_epoch(rows, "val/mIoU").values()))
    # Counted again on the saved model: every parameter of the TerraTorch task's model, in millions.
    saved = SemanticSegmentationTask.load_from_checkpoint(narrow_out / "checkpoints" / "best.ckpt")
    assert narrow[1] == pytest.approx(sum(p.numel() for p in saved.model.parameters()) / 1e6)
    assert list(_per_epoch(rows, "cost/params_M").values()) == pytest.approx([narrow[1]] * 2)  # logged each epoch too

    wide = train(
        compose_cfg(
            *MIOU_AND_PARAMS,
            *FAST,
            "task.max_epochs=1",
            "+hparams.model_args.decoder_channels=256",
            f"output_dir={wide_out}",
        )
    )
    assert wide[1] > narrow[1]


@pytest.mark.slow
def test_other_metrics_are_read_at_the_best_epoch_and_a_test_run_returns_them_as_its_value(compose_cfg, tmp_path):
    """The primary metric is the first one the model learns (val/loss here, after a cost): it picks
    the checkpoint, the epoch the other listed metrics are read at, and the test metric."""
    from bench.train import train

    returned = train(
        compose_cfg(
            "task.metric=[cost/val_images_per_s,val/loss,val/mIoU]",
            "task.direction=[maximize,minimize,maximize]",
            *FAST,
            "task.max_epochs=3",
            "task.patience=3",
            "evaluate_test=true",
            f"output_dir={tmp_path}",
        )
    )
    throughput, loss, miou = returned["value"]
    rows = _logged(tmp_path)
    losses, mious = _per_epoch(rows, "val/loss"), _per_epoch(rows, "val/mIoU")
    best_epoch = min(losses, key=losses.get)
    assert loss == pytest.approx(losses[best_epoch]) and miou == pytest.approx(mious[best_epoch])
    # Images per second over the last validation epoch's batches, also logged every epoch.
    per_epoch_throughput = _per_epoch(rows, "cost/val_images_per_s")
    assert throughput > 0 and throughput == pytest.approx(per_epoch_throughput[max(per_epoch_throughput)])
    assert returned["test_value"] == returned["test/loss"]  # the primary metric's test-split counterpart


@pytest.mark.slow
def test_an_out_of_memory_retry_returns_every_objective(compose_cfg, tmp_path):
    from bench.train import train

    returned = train(
        compose_cfg(
            *MIOU_AND_PARAMS,
            *FAST,
            "task.max_epochs=1",
            "hparams.batch_size=8",
            "+callbacks.inject_oom._target_=tests.oom_injection.InjectOOM",
            "+callbacks.inject_oom.threshold=4",
            f"output_dir={tmp_path}",
        )
    )
    assert {k: v for k, v in returned.items() if k != "value"} == {
        "oom_retries": 1,
        "batch_size": 4,
        "accumulate_grad_batches": 2,
    }
    assert len(returned["value"]) == 2 and all(math.isfinite(v) for v in returned["value"])


@pytest.mark.slow
def test_a_resumed_job_still_knows_the_epochs_before_its_interruption(compose_cfg, tmp_path):
    """A job requeued after its last epoch (last.ckpt written, the job killed before it returned)
    trains no further epoch: every value it returns comes from the epochs of its first run."""
    from bench.train import train

    overrides = [
        "task.metric=[val/mIoU,val/loss,cost/val_images_per_s]",
        "task.direction=[maximize,minimize,maximize]",
        *FAST,
        "task.max_epochs=2",
        f"output_dir={tmp_path}",
    ]
    first = train(compose_cfg(*overrides, "keep_last_checkpoint=true"))
    assert train(compose_cfg(*overrides)) == first


@pytest.mark.slow
def test_a_listed_metric_the_task_never_logs_fails_at_the_first_validation(compose_cfg, tmp_path):
    from bench.errors import MetricNotLoggedError
    from bench.train import train

    with pytest.raises(MetricNotLoggedError) as caught:
        train(
            compose_cfg(
                "task.metric=[val/mIoU,cost/params_M,val/mIoU_typo]",
                "task.direction=[maximize,minimize,maximize]",
                *FAST,
                f"output_dir={tmp_path}",
            )
        )
    assert "task.metric lists 'val/mIoU_typo', which is never logged by SemanticSegmentationTask" in str(caught.value)
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))  # refused after the sanity check, before any epoch


def test_a_metric_list_selects_on_the_first_metric_the_model_learns(compose_cfg):
    spec = build_spec(
        compose_cfg("task.metric=[cost/params_M,val/loss,val/mIoU]", "task.direction=[minimize,minimize,maximize]")
    )
    assert (spec.metric, spec.mode, spec.test_metric) == ("val/loss", "min", "test/loss")
    assert spec.objectives.names == ("cost/params_M", "val/loss", "val/mIoU")
    assert spec.objectives.directions == ("minimize", "minimize", "maximize")
    single = build_spec(compose_cfg())
    assert (single.metric, single.mode, single.objectives) == ("val/mIoU", "max", None)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (
            ["task.metric=[val/mIoU,cost/params_M]", "task.direction=[maximize]"],
            (
                "task.metric lists 2 metrics (val/mIoU, cost/params_M) but task.direction 1 (maximize): give one direction per "
                "metric, in order"
            ),
        ),
        (
            ["task.metric=[val/mIoU,cost/flops]", "task.direction=[maximize,minimize]"],
            (
                "task.metric has cost/flops, which bench does not measure; cost metrics: cost/params_M (the model's parameters, "
                "in millions); cost/val_images_per_s (validation images per second, forward passes only)"
            ),
        ),
        (
            ["task.metric=[val/mIoU,cost/params_M]", "task.direction=[maximize,smaller]"],
            "task.direction has 'smaller'; use minimize or maximize",
        ),
        (
            ["task.metric=[cost/params_M,cost/val_images_per_s]", "task.direction=[minimize,maximize]"],
            "task.metric lists only costs (cost/params_M, cost/val_images_per_s)",
        ),
        (
            ["task.direction=[maximize,minimize]"],
            "task.metric is one metric (val/mIoU) but task.direction is a list of 2 (maximize, minimize)",
        ),
        (["task.metric=[]", "task.direction=[]"], "task.metric=[] lists no metric"),
    ],
)
def test_bad_objective_lists_are_refused_before_launching(compose_cfg, overrides, words):
    """By the sweeper's cell check, in the driver: no job is launched for such a cell."""
    with pytest.raises(ConfigError) as caught:
        check_cell(compose_cfg(*overrides))
    assert str(caught.value).startswith("task 'synthetic_seg': ") and words in str(caught.value)
