"""Each protocol preset is the protocol it names. Composed with Hydra's compose API (no training), a
preset is held key by key to its source, read from tests/data: the GEO-Bench-2 leaderboard's public
submissions (geobench_v2_core, hls) and terratorch-iterate's GEO-Bench v1 configs (geobench_v1). An
edit of a preset, search space, task or model file that drifts from its source fails here."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import bench
from bench.convert.catalog import load_option
from bench.paths import CONFIG_DIR
from bench.spec import build_spec
from hydra_plugins.bench_sweeper._space import parse_search_space
from tests.conftest import group_options

pytestmark = pytest.mark.duration(110)

DATA = Path(__file__).parent / "data"
LEADERBOARD = DATA / "geobench2_leaderboard"
# The leaderboard's full fine-tuning table (its utils/constants.py NORM_BASE_SUBMISSION["full_ft"]); the third
# public submission, 80100fc6, is its frozen-backbone table.
FULL_FT = ["submission_114be1f0-5a41-43a5-b4e6-7fb683bc01ec.csv", "submission_2ce4a907-7ae3-45d3-a07a-558f8d0d758b.csv"]
ITERATE = DATA / "iterate"
GEOBENCH_V2_PRESETS = ["geobench_v2", "geobench_v2_core", "hls"]
PRESETS = ["geobench_v1", *GEOBENCH_V2_PRESETS]
# The catalog models a benchmark compares (prithvi_tiny is the tests' and demo's random model).
MODELS = [m for m in group_options("model") if m != "prithvi_tiny"]


NO_PRUNER = "optuna.pruners.NopPruner"


def compose_preset(preset: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "config", overrides=[f"experiment={preset}", "output_dir=unused", *overrides], return_hydra_config=True
        )


def cells(preset: str) -> list[str]:
    return list(compose_preset(preset).hydra.sweeper.cells.task)


def search(cfg) -> tuple[dict, dict]:
    """The cell's search space as the sweeper samples it: its distributions and its fixed values, less
    the keys its task does not search (task.search_except)."""
    params = OmegaConf.to_container(cfg.search_space, resolve=True)
    skipped = set(OmegaConf.select(cfg, "task.search_except", default=None) or [])
    return parse_search_space({k: v for k, v in params.items() if k.lstrip("+") not in skipped})


def one(values, what: str):
    found = set(values)
    assert len(found) == 1, f"the source has several {what}: {sorted(found)}"
    return found.pop()


def iterate(name: str) -> dict:
    return yaml.safe_load((ITERATE / name).read_text())


# --- GEO-Bench-2 -------------------------------------------------------------------------------------

GROUPS = json.loads((Path(bench.__file__).parent / "report" / "geobench2_groups.json").read_text())
# The leaderboard's decoder labels -> bench's decoder names (task.decoder_name).
DECODERS_V2 = {"UNet": "UNetDecoder", "faster-rcnn": "faster-rcnn", "mask-rcnn": "mask-rcnn"}
# Where bench differs from the submissions on purpose (the preset's comment says why): they label their
# classification rows "UNet" too; bench puts a pooled linear head there.
DECODER_DIFFERS = {dataset: "IdentityDecoder" for dataset in GROUPS["Classification"]}


def all_rows(files=None) -> list[dict[str, str]]:
    rows = []
    for path in sorted(LEADERBOARD.glob("submission_*.csv")) if files is None else [LEADERBOARD / f for f in files]:
        with path.open(newline="") as f:
            rows += [{**row, "submission": path.name} for row in csv.DictReader(f)]
    assert rows, "no rows: the submissions moved"
    return rows


def unet_rows(files=None) -> list[dict[str, str]]:
    """Every UNet row of the public submissions (segmentation, regression and classification)."""
    return [row for row in all_rows(files) if row["decoder"] == "UNet"]


def by_dataset(rows) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row["dataset"], []).append(row)
    return out


def dataset_of(task: str) -> str:
    return compose_preset("geobench_v2", f"task={task}").task.name


def test_geobench_v2_presets_are_the_leaderboards_datasets():
    every = set(by_dataset(all_rows()))
    assert len(every) == 19 and every == {d for members in GROUPS.values() for d in members}
    assert sorted(dataset_of(t) for t in cells("geobench_v2")) == sorted(every)
    assert sorted(dataset_of(t) for t in cells("geobench_v2_core")) == sorted(GROUPS["Core"])


@pytest.mark.parametrize("preset", ["geobench_v2", "geobench_v2_core"])
def test_each_geobench_v2_cell_has_its_datasets_protocol(preset):
    """Per dataset, from every public row of it: decoder, metric label, early-stopping patience, weight
    decay, the batch sizes (tuned over the rows' set, or the one fixed size most rows ran), the trial
    count and the fine-tuning mode."""
    from bench.report.leaderboard import metric_label

    rows = by_dataset(all_rows())
    sweeper = compose_preset(preset).hydra.sweeper
    for task in sweeper.cells.task:
        cfg = compose_preset(preset, f"task={task}", "model=prithvi")
        dataset, source = cfg.task.name, rows[cfg.task.name]
        decoder = one((r["decoder"] for r in source), f"{dataset} decoders")
        assert cfg.task.decoder_name == DECODER_DIFFERS.get(dataset, DECODERS_V2[decoder]), dataset
        assert metric_label(cfg.task.metric) == one((r["Metric"] for r in source), f"{dataset} metrics"), dataset
        patience = {int(float(r["early_stop_patience"])) if r["early_stop_patience"] else None for r in source}
        assert cfg.task.patience == one(patience, f"{dataset} patiences"), dataset  # None: never stops early
        distributions, fixed = search(cfg)
        assert float(fixed["hparams.optimizer_hparams.weight_decay"]) == one(
            (float(r["weight_decay"]) for r in source), f"{dataset} weight decays"
        ), dataset
        sizes = Counter(int(r["batch_size"]) for r in source)
        if one((r["batch_size_selection"] for r in source), f"{dataset} batch size selections") == "HPO":
            assert sorted(distributions["hparams.batch_size"].choices) == sorted(sizes), dataset
        else:  # Fixed: 8, or 4 for the two largest backbones; bench keeps its composed hparams.batch_size
            assert "hparams.batch_size" not in distributions | fixed, dataset
            assert cfg.hparams.batch_size == sizes.most_common(1)[0][0] == 8, dataset
        trials = cfg.task.n_trials if cfg.task.n_trials is not None else sweeper.n_trials
        assert trials == max(int(r["n_trials"]) for r in source), dataset  # fewer only where trials failed
        assert cfg.task.finetuning == one((r["frozen_or_full_ft"] for r in unet_rows(FULL_FT)), "modes"), dataset


@pytest.mark.parametrize("preset", GEOBENCH_V2_PRESETS)
def test_geobench_v2_presets_have_the_submissions_search_space(preset):
    rows = unet_rows()
    cfg = compose_preset(preset, f"task={cells(preset)[0]}")
    distributions, fixed = search(cfg)
    # Weight decay: one value in every row, never searched.
    assert float(fixed["hparams.optimizer_hparams.weight_decay"]) == one(
        (float(r["weight_decay"]) for r in rows), "weight decays"
    )
    assert "hparams.optimizer_hparams.weight_decay" not in distributions
    # Batch size: tuned (HPO) over exactly the sizes the rows hold.
    assert one((r["batch_size_selection"] for r in rows), "batch size selections") == "HPO"
    assert sorted(distributions["hparams.batch_size"].choices) == sorted({int(r["batch_size"]) for r in rows})
    # Learning rate: log-uniform over the decades every submitted value, detection's too, lies in.
    lrs = [float(r["lr"]) for r in all_rows()]
    lr = distributions["hparams.lr"]
    assert lr.log and (lr.low, lr.high) == (
        10.0 ** math.floor(math.log10(min(lrs))),
        10.0 ** math.ceil(math.log10(max(lrs))),
    )
    # No decoder width: the submissions report none.
    assert not any("decoder_channels" in key for key in [*distributions, *fixed])


@pytest.mark.parametrize("preset", GEOBENCH_V2_PRESETS)
def test_geobench_v2_presets_have_the_submissions_budget(preset):
    rows = unet_rows()
    sweeper = compose_preset(preset).hydra.sweeper
    assert sweeper.n_trials == one((int(r["n_trials"]) for r in rows), "trial counts")
    seeds = Counter((r["submission"], r["backbone"], r["dataset"]) for r in all_rows())
    assert sweeper.repeats == one(seeds.values(), "seed counts per cell")


def test_protocol_frozen_is_the_frozen_submissions_protocol():
    """Submission 80100fc6, the leaderboard's frozen category: the full fine-tuning protocol (its rows hold the
    same patience, weight decay, batch sizes and trial count), the encoder frozen."""
    frozen = unet_rows(["submission_80100fc6-dc1a-4514-b946-341157eaf816.csv"])
    assert one((r["frozen_or_full_ft"] for r in frozen), "modes") == "frozen"
    for keys in (("early_stop_patience",), ("weight_decay",), ("n_trials",)):
        assert {float(r[keys[0]]) for r in frozen} == {float(r[keys[0]]) for r in unet_rows(FULL_FT)}, keys
    cfg = compose_preset("geobench_v2", "task=gb2_burn_scars", "protocol=frozen")
    assert cfg.task.finetuning == "frozen" and cfg.task.task_args.freeze_backbone is True
    assert (
        build_spec(
            compose_preset(
                "geobench_v2", "task=gb2_burn_scars", "protocol=frozen", "model=prithvi_tiny", "hparams.batch_size=8"
            )
        ).task_kwargs["freeze_backbone"]
        is True
    )


@pytest.mark.parametrize("model", MODELS)
def test_every_model_gets_the_submissions_decoder_in_a_geobench_v2_cell(model):
    """Every public row is a U-Net (Satlas's included, which bench gave UperNet)."""
    assert one((r["decoder"] for r in unet_rows()), "decoders") == "UNet"
    cfg = compose_preset("geobench_v2_core", "task=gb2_burn_scars", f"model={model}")
    assert cfg.task.decoder_name == "UNetDecoder"


def test_pastis_median_is_not_scored_as_the_leaderboards_pastis():
    """The leaderboard's pastis is a time series; gb2_pastis_median trains on one median image of it, so
    the report (whose dataset is the task's name) must not put it beside the leaderboard's figures."""
    cfg = compose_preset("geobench_v2_core", "task=gb2_pastis_median")
    assert cfg.task.num_frames == 1 and cfg.task.datamodule.temporal_aggregation == "median"
    leaderboard = {row["dataset"] for row in unet_rows()}
    groups = json.loads((Path(bench.__file__).parent / "report" / "geobench2_groups.json").read_text())
    assert "pastis" in leaderboard  # the key it would otherwise be scored under
    assert cfg.task.name not in leaderboard | {d for datasets in groups.values() for d in datasets}
    assert cfg.task.dataset.key == "pastis"  # still the dataset's own files


def test_kuro_siwo_no_data_is_neither_learnt_nor_scored(compose_cfg):
    """geobench_v2 moves Kuro Siwo's "No Data" to a class of its own to be ignored: a prediction on
    those pixels changes neither the loss nor mIoU."""
    import torch
    from geobench_v2.datasets import GeoBenchKuroSiwo
    from hydra.utils import get_class

    no_data = GeoBenchKuroSiwo.classes.index("No Data")
    spec = build_spec(compose_cfg("task=gb2_kuro_siwo", "model=prithvi_tiny"))
    assert spec.task_kwargs["ignore_index"] == no_data
    task = get_class(spec.task_class)(**spec.task_kwargs)
    target = torch.tensor([[[no_data, no_data], [1, 3]]])
    scores = []
    for preds in (target, torch.tensor([[[3, 2], [1, 3]]])):  # right everywhere; wrong on "No Data" only
        miou = task.val_metrics["mIoU"].clone()
        miou.update(preds, target)
        logits = torch.nn.functional.one_hot(preds, 4).permute(0, 3, 1, 2).float() * 10
        scores.append((float(miou.compute()), float(task.criterion(logits, target))))
    assert scores[0] == pytest.approx(scores[1])


# --- GEO-Bench v1: terratorch-iterate ----------------------------------------------------------------

PRITHVI = "geobench_v1_prithvi.yaml"  # the budget's source: iterate's full GEO-Bench v1 run
# iterate's config -> the catalog model of its backbone, and the decoder it gives that family. DOFA's config is a
# smoke test (1 trial, 11 epochs, 0.01x_train): only its decoder is taken.
FAMILIES = {
    PRITHVI: "prithvi_v1_100",
    "geobench_v1_resnet.yaml": "resnet50",
    "geobench_v1_dofa_large_patch16_224_upernetdecoder_true.yaml": "dofa_large",
}
# iterate's decoder names (TerraTorch's, or SMP's `model`) -> TerraTorch's.
DECODERS = {"UperNetDecoder": "UperNetDecoder", "Unet": "UNetDecoder"}


def test_geobench_v1_has_iterates_cells_and_budget():
    source = iterate(PRITHVI)
    sweeper = compose_preset("geobench_v1").hydra.sweeper
    assert sorted(sweeper.cells.task) == sorted(t["name"] for t in source["tasks"])
    assert sweeper.n_trials == source["n_trials"]
    assert not any(t.get("early_prune") for t in source["tasks"]) and sweeper.pruner._target_ == NO_PRUNER
    for name in FAMILIES:  # none of iterate's configs sets a repeat count; bench's is the leaderboard's
        assert "run_repetitions" not in iterate(name)
    seeds = Counter((r["submission"], r["backbone"], r["dataset"]) for r in unet_rows())
    assert sweeper.repeats == one(seeds.values(), "seed counts per cell")
    for task in source["tasks"]:
        cfg = compose_preset("geobench_v1", f"task={task['name']}")
        assert cfg.task.type == task["type"], task["name"]
        assert (cfg.task.patience, cfg.task.partition) == (
            task["early_stop_patience"],
            task["datamodule"]["init_args"]["partition"],
        ), task["name"]
        assert cfg.task.max_epochs == source["defaults"]["trainer_args"]["max_epochs"]
        assert cfg.trainer.precision == source["defaults"]["trainer_args"]["precision"]


def test_geobench_v1_searches_iterates_optimization_space():
    source = iterate(PRITHVI)
    space = source["optimization_space"]
    for task in source["tasks"]:
        distributions, fixed = search(compose_preset("geobench_v1", f"task={task['name']}", "model=prithvi_v1_100"))
        assert not fixed
        lr = distributions["hparams.lr"]
        assert (lr.low, lr.high, lr.log) == (float(space["lr"]["min"]), float(space["lr"]["max"]), space["lr"]["log"])
        wd = distributions["hparams.optimizer_hparams.weight_decay"]
        assert (wd.low, wd.high) == (
            space["optimizer_hparams"]["weight_decay"]["min"],
            space["optimizer_hparams"]["weight_decay"]["max"],
        )
        assert list(distributions["hparams.batch_size"].choices) == space["batch_size"]
        width = distributions.get("hparams.model_args.decoder_channels")
        if "decoder_channels" in task.get("optimization_except", []):
            assert width is None, task["name"]
        else:
            assert list(width.choices) == space["model_args"]["decoder_channels"], task["name"]


@pytest.mark.parametrize("source", sorted(FAMILIES))
def test_geobench_v1_gives_each_model_family_iterates_decoder(source):
    config = iterate(source)
    model = FAMILIES[source]
    catalog = load_option("model", model).model_args.backbone
    assert catalog.endswith(config["defaults"]["terratorch_task"]["model_args"]["backbone"])  # timm_resnet50
    for task in (t for t in config["tasks"] if t["type"] == "segmentation"):
        args = task["terratorch_task"]["model_args"]
        cfg = compose_preset("geobench_v1", f"task={task['name']}", f"model={model}")
        assert cfg.task.decoder_name == DECODERS[args.get("decoder", args.get("model"))], task["name"]
        head = cfg.model.task_types.segmentation
        if "decoder_channels" in args:
            assert head.decoder_channels == args["decoder_channels"], task["name"]
        # A family whose optimization_space has no decoder width does not search one.
        distributions, _ = search(cfg)
        assert ("hparams.model_args.decoder_channels" in distributions) == (
            "decoder_channels" in config["optimization_space"].get("model_args", {})
        ), task["name"]


# --- Every preset ----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_protocol_presets_do_not_prune_and_a_pruner_would_not_cut_the_trial_count(preset):
    """Neither source prunes (terratorch-iterate only when a task asks for early_prune). A pruner turned
    on anyway must leave every cell n_trials completed trials: median pruning favours fast starters,
    and pruned trials would count towards the 16."""
    assert compose_preset(preset).hydra.sweeper.pruner._target_ == NO_PRUNER
    for turned_on in ("pruning=median", "hydra/sweeper/pruner=median"):  # a user's choice wins over the preset's
        pruning = compose_preset(preset, turned_on).hydra.sweeper
        assert pruning.pruner._target_ == "optuna.pruners.MedianPruner" and pruning.count_pruned is False


# (Satlas's U-Net under GEO-Bench-2 is built and run by test_configs.py's test of every head, and its
# decoder per preset checked above: a training step would add only its cost.)
@pytest.mark.parametrize(
    ("preset", "model", "decoder", "overrides"),
    [
        # UperNet on Prithvi's pyramid neck, in bf16-mixed (terratorch-iterate's GEO-Bench v1).
        ("geobench_v1", "prithvi_100_tl", "UperNetDecoder", []),
    ],
)
def test_a_presets_model_trains_a_step(compose_cfg, preset, model, decoder, overrides):
    from bench.train import train

    cfg = compose_cfg(
        f"experiment={preset}",
        "task=synthetic_seg",
        f"model={model}",
        "model.model_args.backbone_pretrained=false",
        "task.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "hparams.batch_size=2",
        "mlflow.enabled=false",
        *overrides,
    )
    assert build_spec(cfg).task_kwargs["model_args"]["decoder"] == decoder
    value = train(cfg)
    assert value == value  # the metric was logged (not NaN)
