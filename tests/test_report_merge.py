"""The report merges only what is the same experiment (issue 22, part 2): partitions, frozen and full
fine-tuning, swept keys and inputs stay apart as separately named models; exact duplicates count once;
conflicting ones are refused before anything is written; --where selects; --compat scores each input
on its own. On sweep dirs in the sweeper's own CSV layout and on the leaderboard's real submissions."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.build import main
from hydra_plugins.bench_sweeper._results import TRIAL_COLUMNS, _write_csv

pytestmark = pytest.mark.duration(150)

LEADERBOARD = Path(__file__).parent / "data" / "geobench2_leaderboard"
FULL = LEADERBOARD / "submission_114be1f0-5a41-43a5-b4e6-7fb683bc01ec.csv"  # full_ft, 18 backbones
RERUN = LEADERBOARD / "submission_2ce4a907-7ae3-45d3-a07a-558f8d0d758b.csv"  # full_ft, 3 of them again
FROZEN = LEADERBOARD / "submission_80100fc6-dc1a-4514-b946-341157eaf816.csv"  # frozen, 10 backbones
NORMALIZER = LEADERBOARD / "normalizer_leaderboard_combined.json"
# repeats.csv's fixed columns after the describing ones (bench_sweeper/_results.py write_repeats)
REPEATS_FIXED = [
    "seed",
    "state",
    "counts",
    "val_value",
    "test_value",
    "checkpoint",
    "duration_s",
    "gpu_hours",
    "cpu_hours",
    "mlflow_run_id",
    "job_dir",
]


def cell(
    task: str,
    model: str,
    scores: dict[int, float | None],
    *,
    trials: list[str] = ("COMPLETE",) * 4,
    finetuning: str | None = "full_ft",
    partition: str | None = None,
    swept: dict | None = None,
    metric: str = "val/mIoU",
    direction: str = "maximize",
    version: int = 1,
    lr: float = 1e-4,
) -> dict:
    """A cell of a sweep: its tuning trials' states, and its repeats' test score per seed (None: FAIL).
    finetuning None: a sweep from before results.csv had a frozen_or_full_ft column."""
    swept = swept or {}
    label = ",".join(f"{k}={v}" for k, v in {"task": task, "model": model, **swept}.items())
    columns = {"task": task, "model": model, "decoder": "UNetDecoder", "partition": partition, "patience": 10}
    if finetuning is not None:
        columns["frozen_or_full_ft"] = finetuning
    # _results._describing: the cell, the app's columns, its coordinates, metric, direction
    described = {
        "cell": label,
        **columns,
        "task": task,
        "model": model,
        **swept,
        "metric": metric,
        "direction": direction,
    }
    return {"described": described, "trials": list(trials), "scores": scores, "version": version, "lr": lr}


def write_sweep(directory: Path, cells: list[dict], interrupted: tuple[int, ...] = (), counts: bool = True) -> Path:
    """results.csv and repeats.csv as the sweeper writes them (its own _write_csv: the describing
    columns first, then the fixed ones, then the rest sorted, a tuned param among them).
    interrupted: seeds whose first run was stopped with the driver and run again on resume.
    counts=False: repeats.csv as written before it had a `counts` column, an interrupted run FAIL."""
    directory.mkdir(parents=True)
    leading = list(dict.fromkeys(k for c in cells for k in c["described"]))
    results, repeats = [], []
    for c in cells:
        study = f"bench[{c['described']['cell']}]@0123456789ab" + (f"/v{c['version']}" if c["version"] > 1 else "")
        for n, state in enumerate(c["trials"]):
            results.append(
                {
                    **c["described"],
                    "study": study,
                    "study_version": c["version"],
                    "trial": n,
                    "state": state,
                    "value": 0.3 + 0.01 * n if state in ("COMPLETE", "PRUNED") else "",
                    "duration_s": 60.0,
                    "gpu_hours": 0.25,
                    "cpu_hours": 2.0,
                    "job_num": n,
                    "job_dir": f"{directory}/{n}",
                    "interrupted": False,
                    "error": "CUDA error: out of memory" if state == "FAIL" else "",
                    "hparams.lr": c["lr"] * (n + 1),
                }
            )
        finished = sum(s in ("COMPLETE", "PRUNED") for s in c["trials"])
        for n, (seed, score) in enumerate(c["scores"].items()):
            failed = score is None
            if seed in interrupted:
                repeats.append(
                    {
                        **c["described"],
                        "seed": seed,
                        "state": "INTERRUPTED" if counts else "FAIL",
                        "counts": False,
                        "study": f"{study}/repeats",
                        "study_version": c["version"],
                        "trial": 100 + n,
                        "interrupted": True,
                        "n_trials": finished,
                    }
                )
            repeats.append(
                {
                    **c["described"],
                    "seed": seed,
                    "state": "FAIL" if failed else "COMPLETE",
                    "counts": True,
                    "val_value": "" if failed else score,
                    "test_value": "" if failed else score,
                    "test/mIoU": "" if failed else score,
                    "checkpoint": f"{directory}/r{n}/best.ckpt",
                    "duration_s": 90.0,
                    "gpu_hours": 0.5,
                    "cpu_hours": 4.0,
                    "mlflow_run_id": f"run{n}",
                    "job_dir": f"{directory}/r{n}",
                    "n_trials": finished,
                    "tuning_best_trial": 0,
                    "study": f"{study}/repeats",
                    "study_version": c["version"],
                    "trial": n,
                    "interrupted": False,
                    "error": "RuntimeError: NaN loss" if failed else "",
                    "hparams.lr": c["lr"],
                }
            )
    _write_csv(str(directory / "results.csv"), results, leading + TRIAL_COLUMNS)
    if repeats:
        fixed = REPEATS_FIXED if counts else [c for c in REPEATS_FIXED if c != "counts"]
        _write_csv(
            str(directory / "repeats.csv"),
            [{k: v for k, v in r.items() if counts or k != "counts"} for r in repeats],
            leading + fixed,
        )
    return directory


def seeds(base: float, n: int = 5) -> dict[int, float]:
    return {seed: round(base + 0.01 * seed, 4) for seed in range(1, n + 1)}


def few_groups(tmp_path: Path, *names: str) -> str:
    """A --groups file with some of the leaderboard's groups (none: no aggregate, no pair), to keep
    the reports on whole submissions quick."""
    groups = json.loads(resources.files("bench.report").joinpath("geobench2_groups.json").read_text())
    path = tmp_path / f"groups_{'_'.join(names) or 'none'}.json"
    path.write_text(json.dumps({name: groups[name] for name in names}))
    return str(path)


def run(tmp_path: Path, capsys, *argv: str) -> tuple[Path, str]:
    out = tmp_path / "report"
    main([*argv, "--out", str(out), "--bootstrap", "50", "--no-mlflow"])
    return out, capsys.readouterr().err


def datasets(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "datasets.csv").set_index(["model", "dataset"])


def test_a_sweep_over_two_partitions_keeps_both_as_separate_models(tmp_path, capsys):
    """A GEO-Bench v1 sweep task.partition=0.10x_train,1.00x_train: both partitions, named apart."""
    cells = [
        cell("eurosat", model, seeds(base + shift), partition=partition, swept={"task.partition": partition})
        for model, base in (("prithvi", 0.8), ("resnet50", 0.7))
        for partition, shift in (("0.10x_train", 0.0), ("1.00x_train", 0.1))
    ]
    sweep = write_sweep(tmp_path / "sweep", cells)
    out, _ = run(tmp_path, capsys, str(sweep))
    table = datasets(out)
    assert sorted(table.index.get_level_values("model")) == [
        "prithvi [0.10x_train]",
        "prithvi [1.00x_train]",
        "resnet50 [0.10x_train]",
        "resnet50 [1.00x_train]",
    ]
    assert (table["n_seeds"] == 5).all()  # before: one partition's seeds silently dropped, the other kept
    assert table.loc[("prithvi [0.10x_train]", "eurosat"), "raw_mean"] == pytest.approx(0.83)
    assert table.loc[("prithvi [1.00x_train]", "eurosat"), "raw_mean"] == pytest.approx(0.93)
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 20 and set(scores["partition_name"]) == {"0.10x_train", "1.00x_train"}

    # --where picks one partition: nothing left to tell apart, so the names are the backbones again
    out, _ = run(tmp_path / "where", capsys, str(sweep), "--where", "partition_name=1.00x_train")
    table = datasets(out)
    assert sorted(table.index.get_level_values("model")) == ["prithvi", "resnet50"]
    assert table.loc[("prithvi", "eurosat"), "raw_mean"] == pytest.approx(0.93)


def test_frozen_or_full_ft_is_what_the_cell_did_and_an_old_sweep_counts_as_full_ft(tmp_path, capsys):
    # burn_scars, a leaderboard dataset: its rows go to submission/ (a synthetic task's would not)
    frozen = write_sweep(
        tmp_path / "frozen",
        [cell("burn_scars", m, seeds(b), finetuning="frozen") for m, b in (("prithvi", 0.5), ("resnet50", 0.4))],
    )
    old = write_sweep(
        tmp_path / "old",
        [
            cell("burn_scars", m, seeds(b), finetuning=None)  # no frozen_or_full_ft column
            for m, b in (("prithvi", 0.7), ("resnet50", 0.6))
        ],
    )
    out, _ = run(tmp_path, capsys, str(frozen), str(old))
    scores = pd.read_csv(out / "scores.csv")
    assert scores.groupby("experiment_name")["frozen_or_full_ft"].unique().map(list).to_dict() == {
        "frozen": ["frozen"],
        "old": ["full_ft"],
    }
    table = datasets(out)
    assert table.loc[("prithvi [frozen]", "burn_scars"), "raw_mean"] == pytest.approx(0.53)
    assert table.loc[("prithvi [full_ft]", "burn_scars"), "raw_mean"] == pytest.approx(0.73)
    assert len(table) == 4
    submitted = pd.read_csv(out / "submission" / "results_and_parameters.csv")
    assert sorted(submitted["frozen_or_full_ft"].unique()) == ["frozen", "full_ft"]


def test_a_swept_key_is_another_experiment_and_a_tuned_hyperparameter_is_not(tmp_path, capsys):
    """Cells swept over task.bands are two experiments; each cell's tuned lr (a param column of
    results.csv and repeats.csv) differs too, and must not split anything."""
    rgb, six = "[RED,GREEN,BLUE]", "[BLUE,GREEN,RED,NIR_NARROW,SWIR_1,SWIR_2]"
    cells = [
        cell("burns", "prithvi", seeds(base), swept={"task.bands": bands}, lr=lr)
        for bands, base, lr in ((rgb, 0.5, 1e-4), (six, 0.6, 3e-4))
    ]
    cells += [
        cell("burns", "resnet50", seeds(0.45), swept={"task.bands": rgb}, lr=5e-4),
        cell("floods", "resnet50", seeds(0.3), swept={"task.bands": rgb}, lr=2e-4),
    ]
    out, _ = run(tmp_path, capsys, str(write_sweep(tmp_path / "sweep", cells)))
    table = datasets(out)
    assert sorted(table.index) == sorted(
        [
            (f"prithvi [task.bands={rgb}]", "burns"),
            (f"prithvi [task.bands={six}]", "burns"),
            (f"resnet50 [task.bands={rgb}]", "burns"),
            (f"resnet50 [task.bands={rgb}]", "floods"),
        ]
    )
    assert (table["n_seeds"] == 5).all()


def test_the_frozen_submission_no_longer_overwrites_full_fine_tuning_scores(tmp_path, capsys):
    out, _ = run(tmp_path, capsys, str(FULL), str(FROZEN), "--groups", few_groups(tmp_path))
    scores = pd.read_csv(out / "scores.csv", float_precision="round_trip")
    assert len(scores) == 1630 + 750  # before: 1630 + 750 - 702
    full = pd.read_csv(FULL, float_precision="round_trip")
    kept = scores[scores["frozen_or_full_ft"] == "full_ft"].merge(full, on=["backbone", "dataset", "Seed"])
    assert len(kept) == 1630 and (kept["test metric_x"] == kept["test metric_y"]).all()
    table = datasets(out)
    models = set(table.index.get_level_values("model"))
    assert {"clay_v1_base [frozen]", "clay_v1_base [full_ft]", "resnet50 [full_ft]"} <= models
    assert len(models) == 18 + 10 and (table["n_seeds"] == 5).all()


def _rerun_without_conflicts(tmp_path: Path) -> Path:
    """Submission 2ce4a907 (the same file name) without its 6 backbone x dataset re-runs whose scores
    differ from 114be1f0's for the same seeds."""
    rerun, full = pd.read_csv(RERUN, float_precision="round_trip"), pd.read_csv(FULL, float_precision="round_trip")
    both = rerun.merge(full, on=["backbone", "dataset", "Seed"])
    clash = set(
        map(tuple, both.loc[both["test metric_x"] != both["test metric_y"], ["backbone", "dataset"]].to_numpy())
    )
    assert len(clash) == 6
    keep = [(b, d) not in clash for b, d in zip(rerun["backbone"], rerun["dataset"])]
    path = tmp_path / RERUN.name
    rerun[keep].to_csv(path, index=False)
    return path


def test_seeds_of_one_experiment_from_two_submissions_are_never_pooled(tmp_path, capsys):
    """terramind_v1_large on biomassters has seeds 205, 913, ... in 114be1f0 and 517, 2004, ... in
    2ce4a907: two tunings. Before, the report pooled them into 10 "seeds" of one model."""
    rerun = _rerun_without_conflicts(tmp_path)
    out, stderr = run(tmp_path, capsys, str(FULL), str(rerun), "--groups", few_groups(tmp_path))
    table = datasets(out)
    assert table["n_seeds"].max() == 5
    first, second = f"terramind_v1_large [{FULL.stem}]", f"terramind_v1_large [{RERUN.stem}]"
    assert {first, second} <= set(table.index.get_level_values("model"))
    assert "terramind_v1_large" not in set(table.index.get_level_values("model"))
    # each keeps its own complete set, its identical rows included
    assert len(table.loc[first]) == 19 and len(table.loc[second]) == 19 - 2
    full = pd.read_csv(FULL)
    mine = full[(full["backbone"] == "terramind_v1_large") & (full["dataset"] == "biomassters")]
    assert table.loc[(first, "biomassters"), "raw_mean"] == pytest.approx(mine["test metric"].mean(), abs=1e-12)
    assert "seeds of one experiment came from several inputs, so kept apart by input: terramind_v1_large" in stderr
    # clay and dofa's rows in both are the same scores: counted once, under their backbone's name
    assert len(table.loc["clay_v1_base"]) == 19 and (table.loc["clay_v1_base", "n_seeds"] == 5).all()
    assert "score(s) given again with the same value by" in stderr and RERUN.name in stderr


def test_conflicting_scores_are_refused_naming_both_inputs_before_anything_is_written(tmp_path, capsys):
    """114be1f0 and 2ce4a907 both give clay_v1_base, dofa_large and terramind_v1_large on kuro_siwo
    (and 3 more) for the same seeds, with other scores (another tuning). Before: the last one won."""
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exited:
        main([str(FULL), str(RERUN), "--out", str(out), "--no-mlflow"])
    message = str(exited.value.code)
    assert message.startswith(
        f"bench.report: error: {FULL} and {RERUN} give different scores for the same experiment and seed ("
    )
    assert (
        "30 such seed(s) in all" in message and "give only one of them, or set one's rows aside with --where" in message
    )
    assert not out.exists()
    # --where sets one backbone's rows aside: what is left merges
    main(
        [
            str(FULL),
            str(RERUN),
            "--where",
            "backbone=resnet50",
            "--where",
            "backbone=clay_v1_base",
            "--where",
            "dataset=treesatai",
            "--out",
            str(out),
            "--no-mlflow",
            "--bootstrap",
            "20",
        ]
    )
    assert sorted(datasets(out).index) == [("clay_v1_base", "treesatai"), ("resnet50", "treesatai")]


def test_where_selects_frozen_or_full_fine_tuning(tmp_path, capsys):
    out, _ = run(
        tmp_path,
        capsys,
        str(FULL),
        str(FROZEN),
        "--where",
        "frozen_or_full_ft=frozen",
        "--groups",
        few_groups(tmp_path),
    )
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 750 and set(scores["frozen_or_full_ft"]) == {"frozen"}
    assert "clay_v1_base" in set(datasets(out).index.get_level_values("model"))  # nothing left to tell apart


def _groups(out: Path) -> dict[tuple[str, str], tuple[float, float]]:
    table = pd.read_csv(out / "groups.csv", float_precision="round_trip").dropna(subset=["value"])
    return {(row.model.split(" [")[0], row.group): (row.value, row.se) for row in table.itertuples()}


def test_compat_bootstraps_each_input_on_its_own(tmp_path, capsys):
    """Adding an input never moves another input's figures, bit for bit; a backbone held by two
    inputs (clay_v1_base's identical rows) is scored once per input."""
    groups = few_groups(tmp_path, "Core", "Classification")

    def compat(name: str, *inputs: Path) -> Path:
        out, _ = run(
            tmp_path / name,
            capsys,
            *map(str, inputs),
            "--normalizer",
            str(NORMALIZER),
            "--groups",
            groups,
            "--compat",
            "geobench2-leaderboard",
        )
        return out

    alone, frozen = compat("alone", FULL), compat("frozen", FROZEN)
    together = compat("together", FULL, FROZEN)
    table = pd.read_csv(together / "groups.csv", float_precision="round_trip").dropna(subset=["value"])
    merged = {(r.model, r.group): (r.value, r.se) for r in table.itertuples()}
    for (backbone, group), figures in _groups(alone).items():
        assert merged[f"{backbone} [full_ft]", group] == figures, (backbone, group)
    for (backbone, group), figures in _groups(frozen).items():
        assert merged[f"{backbone} [frozen]", group] == figures, (backbone, group)
    assert len(merged) == len(_groups(alone)) + len(_groups(frozen))
    # the leaderboard's own Core column still, within the merged report
    theirs = pd.read_csv(LEADERBOARD / "groups.csv", float_precision="round_trip").dropna(subset=["value"])
    for row in theirs[theirs["group"] == "Core"].itertuples():
        assert merged[f"{row.backbone} [full_ft]", "Core"] == (row.value, row.se)

    rerun = _rerun_without_conflicts(tmp_path)
    shared = compat("shared", FULL, rerun)
    table = pd.read_csv(shared / "groups.csv", float_precision="round_trip").dropna(subset=["value"])
    scored = {(r.model, r.group): (r.value, r.se) for r in table.itertuples()}
    for (backbone, group), figures in _groups(alone).items():
        name = (
            f"{backbone} [{FULL.stem}]"
            if backbone in ("clay_v1_base", "dofa_large_patch16_224", "terramind_v1_large")
            else backbone
        )
        assert scored[name, group] == figures, (backbone, group)
    assert (f"clay_v1_base [{RERUN.stem}]", "Classification") in scored


def test_compat_warns_when_a_lower_is_better_metric_reaches_it(tmp_path, capsys):
    cells = [
        cell("cropland", m, seeds(b, 3), metric="val/RMSE", direction="minimize")
        for m, b in (("small", 30.0), ("large", 20.0))
    ]
    sweep = write_sweep(tmp_path / "sweep", cells)
    _, stderr = run(tmp_path, capsys, str(sweep), "--compat", "geobench2-leaderboard")
    assert (
        "--compat geobench2-leaderboard: lower-is-better scores on cropland reach the leaderboard's method "
        "unconverted, and it ranks higher as better"
    ) in stderr
    _, stderr = run(tmp_path / "default", capsys, str(sweep))
    assert "unconverted" not in stderr  # bench's own method flips it


def test_merged_names_reach_every_table(tmp_path, capsys):
    """The costs and tuning tables name the models as datasets.csv does."""
    frozen = write_sweep(tmp_path / "frozen", [cell("burns", "prithvi", seeds(0.5), finetuning="frozen")])
    full = write_sweep(tmp_path / "full", [cell("burns", "prithvi", seeds(0.7))])
    out, _ = run(tmp_path, capsys, str(frozen), str(full))
    tuning = pd.read_csv(out / "tuning.csv")
    assert sorted(tuning["curve"]) == ["prithvi [frozen] / burns", "prithvi [full_ft] / burns"]
    names = set(datasets(out).index.get_level_values("model"))
    assert set(pd.read_csv(out / "pairs.csv")["model_a"]) == names
    assert set(pd.read_csv(out / "costs.csv")["model"]) == names
    assert np.isfinite(pd.read_csv(out / "groups.csv")["value"]).all()
