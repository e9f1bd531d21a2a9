"""scores.csv and submission/ pass the GEO-Bench-2 leaderboard's own validation of a submission.

The leaderboard's rules, copied here from The-AI-Alliance/GEO-Bench-2-Leaderboard at commit
1659ccf54c89678ac940b26ace873f53b24ca00f (utils/constants.py: NEW_SUBMISSION_COLUMN_INFO,
REQUIRED_SEEDS, CSV_FILE, JSON_FILE, JSON_FORMAT, DIMENSIONS; utils/input_validation.py: the checks
that use them), so that these tests need neither its code nor the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import bench.report
from bench.report.build import main
from hydra_plugins.bench_sweeper._results import _write_csv

pytestmark = pytest.mark.duration(17)

# utils/constants.py NEW_SUBMISSION_COLUMN_INFO at 1659ccf5.
STRING_COLS = [
    "dataset",
    "Metric",
    "experiment_name",
    "partition name",
    "backbone",
    "decoder",
    "batch_size_selection",
    "frozen_or_full_ft",
]
INTEGER_COLS = ["early_stop_patience", "n_trials", "Seed", "data_percentages", "batch_size"]
FLOAT_COLS = ["weight_decay", "lr", "test metric"]
REQUIRED_SEEDS = 5  # utils/constants.py REQUIRED_SEEDS
JSON_FORMAT_TYPES = {
    "Paper Link": str,
    "Code Repository Link ": str,
    "License": str,
    "Number of HPO trials": str,
    "Additional information about submission": str,
    "Comments on new models in submission": str,
    "New model info": list,
}  # utils/constants.py JSON_FORMAT: its keys, and its values' types
NEW_MODEL_KEYS = {"model_display_name", "model_size", "unique_backbone_key"}
GROUPS = json.loads((Path(bench.report.__file__).parent / "geobench2_groups.json").read_text())  # DIMENSIONS
CLASSIFICATION = GROUPS["Classification"]

LEADERBOARD_CSV = (
    Path(__file__).parent / "data" / "geobench2_leaderboard" / "submission_114be1f0-5a41-43a5-b4e6-7fb683bc01ec.csv"
)
# The fixed columns of repeats.csv after each cell's describing ones (bench_sweeper/_results.py write_repeats).
REPEATS_LEADING = [
    "seed",
    "state",
    "val_value",
    "test_value",
    "checkpoint",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "mlflow_run_id",
    "job_dir",
]


def _is_text(column: pd.Series) -> bool:
    """The leaderboard's pd.api.types.is_object_dtype under its pandas 2.2.3, where read_csv gives text
    columns dtype object; pandas 3 gives them its str dtype."""
    return pd.api.types.is_object_dtype(column) or isinstance(column.dtype, pd.StringDtype)


def assert_leaderboard_columns(path: Path) -> pd.DataFrame:
    """utils/input_validation.py check_csv_columns_datatypes."""
    data = pd.read_csv(path)
    missing = [c for c in STRING_COLS + INTEGER_COLS + FLOAT_COLS if c not in data.columns]
    assert missing == [], f"{path.name} lacks {missing}"
    assert [c for c in STRING_COLS if not _is_text(data[c])] == [], data.dtypes
    assert [c for c in INTEGER_COLS + FLOAT_COLS if not pd.api.types.is_numeric_dtype(data[c])] == [], data.dtypes
    return data


def write_sweep(sweep: Path, cells: list[dict], seeds: int = REQUIRED_SEEDS) -> Path:
    """A sweep dir's repeats.csv as the sweeper writes it (its own _write_csv: describing columns,
    the fixed ones, then the rest sorted). A cell: describing columns, then 'params' (its best
    params), 'extra' (columns every row has) and 'rows' ({seed: overrides} for single rows)."""
    sweep.mkdir(parents=True)
    rows, leading = [], []
    for cell in cells:
        described = {k: v for k, v in cell.items() if k not in ("params", "extra", "rows")}
        leading += [k for k in described if k not in leading]
        for seed in range(seeds):
            score = 0.5 + 0.01 * seed
            rows.append(
                {
                    **described,
                    "seed": seed,
                    "state": "COMPLETE",
                    "val_value": score,
                    "test_value": score,
                    f"test/{cell['metric'].split('/')[1]}": score,
                    "checkpoint": f"{sweep}/{seed}/best.ckpt",
                    "duration_s": 60.0,
                    "gpu_hours": 0.1,
                    "cpu_hours": 0.8,
                    "mlflow_run_id": f"run{seed}",
                    "job_dir": f"{sweep}/{seed}",
                    "n_trials": 16,
                    "tuning_best_trial": 3,
                    "trial": seed,
                    "study": f"bench[{described['cell']}]@abc/repeats",
                    "study_version": 1,
                    "interrupted": False,
                    "error": "",
                    **cell.get("extra", {}),
                    **cell["params"],
                    **cell.get("rows", {}).get(seed, {}),
                }
            )
    # a seed that failed: no test score, never a row of scores.csv
    rows.append({**rows[-1], "seed": seeds, "state": "FAIL", "test_value": "", "error": "CUDA error"})
    _write_csv(str(sweep / "repeats.csv"), rows, leading + REPEATS_LEADING)
    return sweep


def _cell(task: str, model: str, metric: str, **extra) -> dict:
    return {
        "cell": f"task={task},model={model}",
        "task": task,
        "model": model,
        "decoder": "UNetDecoder",
        "metric": metric,
        "direction": "maximize",
        **extra,
    }


@pytest.fixture
def report_dir(tmp_path, capsys) -> tuple[Path, str, str]:
    # GEO-Bench-2's Classification group, 2 models, lr and batch size tuned (one seed's out-of-memory
    # retry ran at batch 4).
    metrics = {
        "so2sat": "val/Accuracy_Micro",
        "forestnet": "val/Accuracy_Micro",
        "benv2": "val/Multilabel_F1_Score",
        "treesatai": "val/Multilabel_F1_Score",
    }
    tuned = [
        {
            **_cell(task, model, metric),
            "params": {"hparams.lr": 1e-4, "hparams.batch_size": 8},
            "rows": {1: {"oom_retries": 1, "batch_size": 4, "accumulate_grad_batches": 2}},
        }
        for model in ("prithvi", "dofa_large")
        for task, metric in metrics.items()
    ]
    gb2 = write_sweep(tmp_path / "gb2", tuned)
    # The synthetic task on a swept partition, patience and batch size named in hydra.sweeper.columns.
    partitioned = [
        {
            **_cell("synthetic_cls", "prithvi_tiny", "val/Accuracy", **{"task.partition": "0.10x_train"}),
            "params": {"hparams.lr": 1e-3},
            "extra": {"patience": 50, "batch_size": 16, "hparams.optimizer_hparams.weight_decay": 0.05},
            "rows": {2: {"oom_retries": 1, "batch_size": 8, "accumulate_grad_batches": 2}},
        }
    ]
    partition = write_sweep(tmp_path / "partition", partitioned)
    # Another submission's rows, to compare with: in scores.csv, not in submission/.
    theirs = pd.read_csv(LEADERBOARD_CSV)
    theirs = theirs[(theirs["backbone"] == "resnet50") & theirs["dataset"].isin(["so2sat", "benv2"])]
    leader = tmp_path / "leader.csv"
    theirs.to_csv(leader, index=False)
    out = tmp_path / "report"
    main([str(gb2), str(partition), str(leader), "--out", str(out), "--bootstrap", "20", "--no-mlflow"])
    captured = capsys.readouterr()
    return out, captured.out, captured.err


def test_scores_csv_has_the_leaderboards_columns_and_types(report_dir):
    out, stdout, _ = report_dir
    scores = assert_leaderboard_columns(out / "scores.csv")
    assert len(scores) == 8 * REQUIRED_SEEDS + REQUIRED_SEEDS + 2 * REQUIRED_SEEDS  # the FAIL seeds left out
    rows = scores.set_index(["backbone", "dataset", "Seed"]).sort_index()
    mine, partitioned, theirs = (
        rows.loc["prithvi", "so2sat", 0],
        rows.loc["prithvi_tiny", "synthetic_cls", 0],
        rows.loc["resnet50", "so2sat"].iloc[0],
    )
    # the leaderboard's metric labels; TerraTorch's macro "Accuracy" is not its Overall_Accuracy
    assert (mine["Metric"], rows.loc["prithvi", "benv2", 0]["Metric"], partitioned["Metric"]) == (
        "Overall_Accuracy",
        "Multilabel_F1_Score",
        "Accuracy",
    )
    # partitions: default -> 100 %, 0.10x_train -> 10 %, as the leaderboard's own files say it
    assert (mine["partition name"], mine["data_percentages"], mine["partition_name"]) == ("100%", 100, "default")
    assert (partitioned["partition name"], partitioned["data_percentages"], partitioned["partition_name"]) == (
        "10%",
        10,
        "0.10x_train",
    )
    assert (theirs["partition name"], theirs["data_percentages"], theirs["partition_name"]) == ("100%", 100, "default")
    # batch size: the tuned one (also where an out-of-memory retry ran at half of it), else the composed
    # one from hydra.sweeper.columns; unknown (empty) where only the retry's halved batch was recorded
    assert rows.loc["prithvi", "so2sat", 1]["batch_size"] == mine["batch_size"] == 8
    assert (mine["batch_size_selection"], partitioned["batch_size_selection"]) == ("HPO", "Fixed")
    assert partitioned["batch_size"] == 16 and pd.isna(rows.loc["prithvi_tiny", "synthetic_cls", 2]["batch_size"])
    assert (partitioned["early_stop_patience"], partitioned["weight_decay"], partitioned["lr"]) == (50, 0.05, 1e-3)
    assert pd.isna(mine["early_stop_patience"]) and mine["lr"] == 1e-4 and mine["n_trials"] == 16
    assert (mine["frozen_or_full_ft"], mine["decoder"], mine["experiment_name"]) == ("full_ft", "UNetDecoder", "gb2")
    # whole numbers stay whole (not 8.0), as in the leaderboard's own files
    text = pd.read_csv(out / "scores.csv", dtype=str).set_index(["backbone", "dataset", "Seed"]).sort_index()
    assert text.loc[("prithvi", "so2sat", "0"), ["batch_size", "n_trials", "data_percentages"]].tolist() == [
        "8",
        "16",
        "100",
    ]
    assert "submission/" in stdout.splitlines()[-1]


def assert_passes_leaderboard_validation(folder: Path, seeds: int = REQUIRED_SEEDS) -> pd.DataFrame:
    """utils/input_validation.py validate_new_submission's checks, in its order; `seeds` stands in for its
    REQUIRED_SEEDS (5), for a test sweep that ran fewer repeats."""
    # check_correct_file_type: the folder holds exactly these two files
    assert sorted(p.name for p in folder.iterdir()) == ["additional_info.json", "results_and_parameters.csv"]
    data = assert_leaderboard_columns(folder / "results_and_parameters.csv")
    # check_correct_entries_per_dataset: `seeds` test scores and unique seeds per backbone x dataset
    counts = data.groupby(["backbone", "dataset"]).agg(scores=("test metric", "count"), seeds=("Seed", "nunique"))
    assert set(counts["scores"]) == set(counts["seeds"]) == {seeds}
    # check_has_atleast_one_dimension, check_has_frozen_or_full_ft
    assert any(set(members) <= set(data["dataset"]) for members in GROUPS.values()), set(data["dataset"])
    assert set(data["frozen_or_full_ft"]) <= {"frozen", "full_ft"}
    # check_json_keys: every key of JSON_FORMAT, with its value's type
    info = json.loads((folder / "additional_info.json").read_text())
    assert {key: type(info.get(key)) for key in JSON_FORMAT_TYPES} == JSON_FORMAT_TYPES
    assert [set(model) for model in info["New model info"]] == [NEW_MODEL_KEYS] * data["backbone"].nunique()
    assert sorted(m["unique_backbone_key"] for m in info["New model info"]) == sorted(set(data["backbone"]))
    return data


def test_the_submission_folder_passes_the_leaderboards_validation(report_dir):
    out, _, stderr = report_dir
    data = assert_passes_leaderboard_validation(out / "submission")
    # bench's own rows only: the other submission's resnet50 is in scores.csv, not here
    # and the leaderboard's datasets only: the synthetic task's rows stay in scores.csv
    assert set(data["backbone"]) == {"prithvi", "dofa_large"} and "synthetic_cls" not in set(data["dataset"])
    assert "left out: synthetic_cls" in (out / "report.html").read_text()
    assert set(CLASSIFICATION) <= set(data["dataset"])
    info = json.loads((out / "submission" / "additional_info.json").read_text())
    assert info["Number of HPO trials"] == "16"
    assert "submission/:" not in stderr  # nothing the leaderboard would refuse


def test_the_submission_says_what_the_leaderboard_would_refuse(tmp_path, capsys):
    cells = [{**_cell("kuro_siwo", "m", "val/RMSE", direction="minimize"), "params": {}}]
    sweep = write_sweep(tmp_path / "sweep", cells, seeds=3)
    main([str(sweep), "--out", str(tmp_path / "report"), "--bootstrap", "20", "--no-mlflow"])
    stderr = capsys.readouterr().err
    assert "submission/: the leaderboard wants 5 seeds of each backbone x dataset (m / kuro_siwo: 3)" in stderr
    assert "submission/: the leaderboard wants every dataset of at least one of its capability groups" in stderr
    assert "submission/: lower-is-better scores on kuro_siwo" in stderr
    scores = pd.read_csv(tmp_path / "report" / "submission" / "results_and_parameters.csv")
    # the leaderboard's own decoder label; an RMSE it has no higher-is-better form of stays as it is
    assert set(scores["Metric"]) == {"RMSE"} and set(scores["decoder"]) == {"UNet"}
    assert sorted(scores["test metric"]) == sorted([0.5, 0.51, 0.52])


def test_biomassters_rmse_is_converted_as_the_leaderboard_stores_it_only_where_it_does(tmp_path, capsys):
    """The leaderboard keeps biomassters as 1 - RMSE x 0.2538 (higher is better, still labelled RMSE):
    the submission folder and --compat convert bench's RMSE so; scores.csv and bench's own method keep
    the RMSE, lower is better."""
    from bench.report.leaderboard import BIOMASSTERS_STD

    cells = [
        {**_cell("biomassters", model, "val/RMSE", direction="minimize"), "params": {}}
        for model in ("prithvi", "dofa_large")
    ]
    sweep = write_sweep(tmp_path / "sweep", cells)
    rmse = [0.5 + 0.01 * seed for seed in range(REQUIRED_SEEDS)]
    main([str(sweep), "--out", str(tmp_path / "own"), "--bootstrap", "20", "--no-mlflow"])
    main([str(sweep), "--out", str(tmp_path / "compat"), "--compat", "geobench2-leaderboard", "--no-mlflow"])
    err = capsys.readouterr().err
    submitted = pd.read_csv(tmp_path / "own" / "submission" / "results_and_parameters.csv")
    assert set(submitted["Metric"]) == {"RMSE"}
    assert sorted(submitted["test metric"]) == pytest.approx(sorted([1 - r * BIOMASSTERS_STD for r in rmse] * 2))
    assert "lower-is-better" not in err  # neither the submission's objection nor compat's warning
    assert sorted(pd.read_csv(tmp_path / "own" / "scores.csv")["test metric"]) == pytest.approx(sorted(rmse * 2))
    own = pd.read_csv(tmp_path / "own" / "datasets.csv")
    compat = pd.read_csv(tmp_path / "compat" / "datasets.csv")
    assert own["raw_mean"].tolist() == pytest.approx([sum(rmse) / len(rmse)] * 2)
    assert compat["raw_mean"].tolist() == pytest.approx([1 - sum(rmse) / len(rmse) * BIOMASSTERS_STD] * 2)
    assert set(own["direction"]) == {"minimize"} and set(compat["direction"]) == {"maximize"}


def test_detection_metrics_get_the_leaderboards_labels():
    from bench.report.leaderboard import metric_label

    assert [metric_label(m) for m in ("val_map", "test_segm_map", "val/mIoU", "val/Accuracy_Micro", "val/IoU_1")] == [
        "test_test_map",
        "test_test_segm_map",
        "Multiclass_Jaccard_Index",
        "Overall_Accuracy",
        "IoU_1",
    ]


def test_leaderboard_csvs_alone_give_no_submission_folder(tmp_path, capsys):
    before = pd.read_csv(LEADERBOARD_CSV)
    before = before[before["backbone"].isin(["resnet50", "clay_v1_base"])].reset_index(drop=True)
    before.to_csv(tmp_path / "theirs.csv", index=False)
    main([str(tmp_path / "theirs.csv"), "--out", str(tmp_path / "report"), "--bootstrap", "20", "--no-mlflow"])
    assert not (tmp_path / "report" / "submission").exists()
    assert "submission/" not in capsys.readouterr().out
    # a leaderboard submission read and written again keeps its columns, types and values
    after = assert_leaderboard_columns(tmp_path / "report" / "scores.csv")
    assert len(after) == len(before)
    columns = STRING_COLS + INTEGER_COLS + FLOAT_COLS
    pd.testing.assert_frame_equal(after[columns], before[columns], check_dtype=False)
