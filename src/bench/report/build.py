"""python -m bench.report: from test scores to the result tables, figures and page a paper needs.

inputs (inputs.py, each on its own) -> merged by experiment, models named (merge.py)
  -> scores.csv (leaderboard.py's layout; the sweeps' rows also as submission/)
  -> normalised (stats.py or leaderboard_method.py; intervals.py)
  -> datasets.csv (with budgets.py's notes), groups.csv, pairs.csv, tuning.csv (tuning.py)
  -> PNG figures + report.html (page.py)
  -> logged to each input sweep's MLflow benchmark run
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

import pandas as pd

from bench.errors import ReportError
from bench.report import budgets, inputs, leaderboard, leaderboard_method, merge, notes, output, page, sections, stats
from bench.report.costs import cost_table
from bench.report.tuning import tuning_table
from hydra_plugins.bench_sweeper.api import MAXIMIZE

COMPAT_MODES = ("geobench2-leaderboard",)
GROUPS_COLUMNS = ["model", "group", "value", "ci_low", "ci_high", "se", "reason"]
PAIRS_COLUMNS = ["group", "model_a", "model_b", "probability", "ci_low", "ci_high"]


class Args(argparse.Namespace):
    """The command line as parse_args reads it, and what build wrote (for main's closing line)."""

    inputs: list[str]
    normalizer: str | None
    groups: str | None
    bootstrap: int
    seed: int
    resample: str
    compat: str | None
    where: list[str]
    out: str | None
    tracking_uri: str | None
    no_mlflow: bool
    argv: list[str]
    wrote_submission: bool
    wrote_leaderboard: bool
    wrote_protocols: bool
    wrote_costs: bool


def parse_args(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="sweep dirs, mlflow:<experiment>, or leaderboard submission CSVs")
    parser.add_argument("--normalizer", help="JSON {dataset: [min, max]}; default: observed min and max across models")
    parser.add_argument("--groups", help="JSON {group: [datasets]}, or 'geobench2' (built in); default: one group, All")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument(
        "--resample",
        choices=("seeds", "datasets"),
        default="seeds",
        help="group CIs resample seeds within each model x dataset, or datasets too",
    )
    parser.add_argument("--compat", choices=COMPAT_MODES, help="reproduce the public leaderboard's own figures")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep the rows whose KEY (a scores.csv column or a swept key) is VALUE; repeatable "
        "(a key given twice: either value)",
    )
    parser.add_argument("--out", help="output dir (default: <first sweep dir>/report, else ./report)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for mlflow:<experiment> inputs")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to the sweeps' MLflow runs")
    args = parser.parse_args(argv, namespace=Args())
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the provenance table
    if args.bootstrap < 1:
        parser.error(f"--bootstrap {args.bootstrap}: give at least 1 bootstrap sample")
    return args


def _groups(option: str | None, datasets: set[str], normalizer: stats.Normalizer | None) -> dict[str, list[str]]:
    if option is None:
        return {"All": sorted(datasets)}
    if option == "geobench2":
        return json.loads(resources.files("bench.report").joinpath("geobench2_groups.json").read_text())
    groups = inputs.load_json(option, "groups file")
    known = datasets | set(normalizer or {})
    for name, members in groups.items():
        if not isinstance(members, list):
            raise ReportError(f"group {name!r} in {option} must list dataset names")
        unknown = [d for d in members if d not in known]
        if unknown:
            raise ReportError(
                f"group {name!r} in {option} names dataset(s) {', '.join(unknown)} that no input "
                f"has{' and the normalizer does not know' if normalizer else ''}; known: {', '.join(sorted(known))}"
            )
    return groups


def _normalizer(path: str | None, datasets: set[str]) -> stats.Normalizer | None:
    if path is None:
        return None
    ranges = inputs.load_json(path, "normalizer")
    missing = sorted(datasets - set(ranges))
    if missing:
        raise ReportError(
            f"the normalizer {path} has no [min, max] for dataset(s) {', '.join(missing)}; add them, "
            "or leave --normalizer out to normalise by the observed range"
        )
    return {d: (float(r[0]), float(r[1])) for d, r in ranges.items()}


def _scored(scores: pd.DataFrame) -> pd.DataFrame:
    """The statistics' input: one row per model x dataset x seed."""
    data = pd.DataFrame(
        {
            "model": scores["model"].astype(str),
            "backbone": scores["backbone"].astype(str),
            "dataset": scores["dataset"].astype(str),
            "source": scores["source"].astype(str),
            "metric": scores["Metric"],
            "direction": scores["direction"].fillna(MAXIMIZE),
            "score": pd.to_numeric(scores["test metric"], errors="coerce"),
        }
    )
    if data["score"].isna().any():
        bad = data[data["score"].isna()].iloc[0]
        raise ReportError(f"a 'test metric' that is not a number: model {bad.model}, dataset {bad.dataset}")
    return data


def _statistics(
    args: Args, data: pd.DataFrame, normalizer: stats.Normalizer | None, groups: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    settings = stats.Settings(args.bootstrap, args.seed, args.resample == "datasets")
    if data.empty:
        return (
            pd.DataFrame(columns=stats.DATASET_COLUMNS),
            pd.DataFrame(columns=GROUPS_COLUMNS),
            pd.DataFrame(columns=PAIRS_COLUMNS),
        )
    if args.compat:
        data["normalized"] = leaderboard_method.normalize(data, normalizer)
        datasets = leaderboard_method.dataset_table(data).merge(
            stats.dataset_table(data)[["model", "dataset", "raw_iqm", "raw_ci_low", "raw_ci_high"]]
        )
        return datasets, leaderboard_method.group_table(data, groups), pd.DataFrame(columns=PAIRS_COLUMNS)
    data["normalized"] = stats.normalize(data, normalizer)
    return (
        stats.dataset_table(data),
        stats.group_table(data, groups, settings),
        stats.pair_table(data, groups, settings),
    )


def build(args: Args) -> Path:
    loaded = merge.load(args.inputs, args.tracking_uri, args.where, per_input=bool(args.compat))
    data = _scored(loaded.scores)  # every input checked before anything is made
    if args.compat:  # biomassters' RMSE as the leaderboard stores it, as its own submissions hold it
        data = leaderboard.as_leaderboard_scores(data, score="score", label="metric")
    normalizer = _normalizer(args.normalizer, set(data["dataset"]))
    groups = _groups(args.groups, set(data["dataset"]), normalizer)
    out = Path(args.out or (loaded.sweep_dirs[0] / "report" if loaded.sweep_dirs else "report"))
    with output.writing(out):  # one report at a time in a folder
        _write(args, loaded, data, normalizer, groups, out)
    return out


def _write(
    args: Args,
    loaded: merge.Inputs,
    data: pd.DataFrame,
    normalizer: stats.Normalizer | None,
    groups: dict[str, list[str]],
    out: Path,
) -> None:
    scores = loaded.scores
    said = notes.compat_warnings(args, data) if args.compat else []
    said += notes.normalisation_notes(data, normalizer)
    datasets, group_rows, pairs = _statistics(args, data, normalizer, groups)
    datasets = budgets.annotate(datasets, scores, loaded.tuning, loaded.repeats)
    failed = budgets.failed_table(loaded.repeats)
    curves, flags = tuning_table(loaded.tuning)
    said += notes.unequal_notes(datasets, failed, flags)
    for line in said:
        print(f"bench.report: {line}", file=sys.stderr)

    # `model` is the name the tables use; the input's path stays out (a sweep read from MLflow is the same rows)
    scores.drop(columns=["source"]).to_csv(out / "scores.csv", index=False)
    # The sweeps' rows of the leaderboard's own datasets, ready for it; a synthetic task is none of its
    # business, so it gets no folder and none of the leaderboard's objections.
    known = scores["dataset"].astype(str).isin(leaderboard.leaderboard_datasets()).to_numpy()
    own = loaded.own.to_numpy()
    args.wrote_submission = bool((own & known).any())
    if args.wrote_submission:
        mine = scores[own & known].drop(columns=["model", "source"])
        for objection in leaderboard.write_submission(mine, out / "submission"):
            print(f"bench.report: submission/: {objection}", file=sys.stderr)
        if (own & ~known).any():
            left = ", ".join(sorted(scores.loc[own & ~known, "dataset"].astype(str).unique()))
            said.append(f"submission/ holds the GEO-Bench-2 leaderboard's datasets only; left out: {left}")
    datasets.to_csv(out / "datasets.csv", index=False)
    group_rows.to_csv(out / "groups.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    flags.to_csv(out / "tuning.csv", index=False)
    costs = cost_table(loaded.tuning, loaded.repeats, data)
    args.wrote_costs = costs is not None  # for main's closing line
    if costs is None:
        print(
            "bench.report: no input recorded GPU- or CPU-hours (leaderboard CSVs, or sweeps from before bench "
            "accounted them): no cost table",
            file=sys.stderr,
        )
    else:
        costs.to_csv(out / "costs.csv", index=False)
    title = f"bench report: {', '.join(Path(i).name or i for i in args.inputs)}"
    top = sections.top(
        args, title, data, scores, datasets, group_rows, flags, loaded.tuning, costs, loaded.sweep_dirs, out
    )
    args.wrote_leaderboard = bool(top.files)
    args.wrote_protocols = bool(top.protocol_files)
    page.write_report(
        out,
        data,
        datasets,
        group_rows,
        pairs,
        flags,
        curves,
        failed,
        costs,
        notes=[
            f"inputs: {', '.join(args.inputs)}",
            notes.method(args),
            f"normaliser: {args.normalizer or 'observed min and max across models'}",
            f"{data['model'].nunique()} models, {data['dataset'].nunique()} datasets, {len(data)} seed scores",
            *loaded.notes,
            *said,
        ],
        top=top,
    )
    if not args.no_mlflow:
        output.log_to_mlflow(loaded.sweep_dirs, out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        out = build(args)
    except ReportError as exc:
        sys.exit(f"bench.report: error: {exc}")
    print(
        f"report written to {out}: scores.csv {'leaderboard.csv .md .tex ' if args.wrote_leaderboard else ''}"
        f"{'protocols.csv .md ' if args.wrote_protocols else ''}"
        "datasets.csv groups.csv pairs.csv tuning.csv cells.csv provenance.csv"
        f"{' costs.csv' if args.wrote_costs else ''} report.html + PNG figures"
        f"{' submission/ (for the GEO-Bench-2 leaderboard)' if args.wrote_submission else ''}"
    )
