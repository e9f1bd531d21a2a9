"""python -m bench.report: from test scores to the result tables, figures and page a paper needs.

    inputs (inputs.py) -> scores.csv (leaderboard.py's layout; the sweeps' rows also as submission/)
      -> normalised (stats.py or compat.py)
      -> datasets.csv, groups.csv, pairs.csv, tuning.csv -> PNG figures + report.html (page.py)
      -> logged to each input sweep's MLflow benchmark run
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import compat, inputs, leaderboard, page, stats
from bench.report.costs import cost_matrix, cost_table
from bench.report.errors import ReportError
from hydra_plugins.bench_sweeper._objectives import MAXIMIZE

COMPAT_MODES = ("geobench2-leaderboard",)
TAUS = np.linspace(0.0, 1.0, 101)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="sweep dirs, mlflow:<experiment>, or leaderboard submission CSVs")
    parser.add_argument("--normalizer", help="JSON {dataset: [min, max]}; default: observed min and max across models")
    parser.add_argument("--groups", help="JSON {group: [datasets]}, or 'geobench2' (built in); default: one group, All")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--resample", choices=("seeds", "datasets"), default="seeds",
                        help="group CIs resample seeds within each model x dataset, or datasets too")
    parser.add_argument("--compat", choices=COMPAT_MODES, help="reproduce the public leaderboard's own figures")
    parser.add_argument("--out", help="output dir (default: <first sweep dir>/report, else ./report)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for mlflow:<experiment> inputs")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to the sweeps' MLflow runs")
    args = parser.parse_args(argv)
    if args.bootstrap < 1:
        parser.error(f"--bootstrap {args.bootstrap}: give at least 1 bootstrap sample")
    return args


def _groups(option: str | None, datasets: set[str], normalizer: dict | None) -> dict[str, list[str]]:
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
            raise ReportError(f"group {name!r} in {option} names dataset(s) {', '.join(unknown)} that no input "
                              f"has{' and the normalizer does not know' if normalizer else ''}; known: {', '.join(sorted(known))}")
    return groups


def _normalizer(path: str | None, datasets: set[str]) -> dict[str, tuple[float, float]] | None:
    if path is None:
        return None
    ranges = inputs.load_json(path, "normalizer")
    missing = sorted(datasets - set(ranges))
    if missing:
        raise ReportError(f"the normalizer {path} has no [min, max] for dataset(s) {', '.join(missing)}; add them, "
                          "or leave --normalizer out to normalise by the observed range")
    return {d: (float(r[0]), float(r[1])) for d, r in ranges.items()}


def tuning_table(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell: best validation value after each finished trial, and whether the best was still
    improving in the last quarter of the trials (a budget too small to trust)."""
    curves, flags = [], []
    if results.empty or "state" not in results.columns:
        return pd.DataFrame(columns=["curve", "position", "best_so_far"]), pd.DataFrame(columns=["curve", "still_improving"])
    finished = results[results["state"].isin(["COMPLETE", "PRUNED"])].sort_values("trial")
    for (sweep, cell), rows in finished.groupby(["sweep", "cell"], sort=True):
        name = " / ".join(str(rows[c].iloc[0]) for c in ("model", "task") if c in rows.columns) or str(cell)
        values = rows["value"].where(rows["state"] == "COMPLETE")
        better = values.cummax() if rows["direction"].iloc[0] == MAXIMIZE else values.cummin()
        better = better.ffill()  # a pruned trial (no value) keeps the best so far, it does not erase it
        best = better.iloc[-1]
        positions = np.arange(1, len(rows) + 1)
        best_at = int(positions[(better == best).to_numpy()][0]) if pd.notna(best) else 0
        curves.append(pd.DataFrame({"curve": name, "position": positions, "best_so_far": better.to_numpy()}))
        flags.append({"curve": name, "sweep": sweep, "cell": cell, "n_trials": len(rows), "best_value": best,
                      "best_at_trial": best_at, "still_improving": best_at > 0.75 * len(rows)})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(flags)


def build(args: argparse.Namespace) -> Path:
    loaded = inputs.load(args.inputs, args.tracking_uri)
    scores = loaded.scores
    data = pd.DataFrame({"model": scores["backbone"].astype(str), "dataset": scores["dataset"].astype(str),
                         "metric": scores["Metric"], "direction": scores["direction"].fillna(MAXIMIZE),
                         "score": pd.to_numeric(scores["test metric"], errors="coerce")})
    if data["score"].isna().any():
        bad = data[data["score"].isna()].iloc[0]
        raise ReportError(f"a 'test metric' that is not a number: model {bad.model}, dataset {bad.dataset}")
    normalizer = _normalizer(args.normalizer, set(data["dataset"]))
    groups = _groups(args.groups, set(data["dataset"]), normalizer)
    settings = stats.Settings(args.bootstrap, args.seed, args.resample == "datasets")
    if args.compat:
        data["normalized"] = compat.normalize(data, normalizer)
        datasets, group_rows = compat.dataset_table(data), compat.group_table(data, groups)
        pairs = pd.DataFrame(columns=["group", "model_a", "model_b", "probability", "ci_low", "ci_high"])
    else:
        data["normalized"] = stats.normalize(data, normalizer)
        datasets, group_rows = stats.dataset_table(data, settings), stats.group_table(data, groups, settings)
        pairs = stats.pair_table(data, groups, settings)
    curves, flags = tuning_table(loaded.tuning)

    out = Path(args.out or (loaded.sweep_dirs[0] / "report" if loaded.sweep_dirs else "report"))
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    args.wrote_submission = bool(loaded.own.any())  # the sweeps' rows, ready for the leaderboard
    if args.wrote_submission:
        for objection in leaderboard.write_submission(scores[loaded.own.to_numpy()], out / "submission"):
            print(f"bench.report: submission/: {objection}", file=sys.stderr)
    datasets.to_csv(out / "datasets.csv", index=False)
    group_rows.to_csv(out / "groups.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    flags.to_csv(out / "tuning.csv", index=False)
    costs = cost_table(loaded.tuning, loaded.repeats, data)
    args.wrote_costs = costs is not None  # for main's closing line
    if costs is None:
        print("bench.report: no input recorded GPU- or CPU-hours (leaderboard CSVs, or sweeps from before bench "
              "accounted them): no cost table", file=sys.stderr)
    else:
        costs.to_csv(out / "costs.csv", index=False)
    images = {"groups": page.plot_groups(group_rows, out / "groups.png"),
              "datasets": page.plot_datasets(datasets, out / "datasets.png"),
              "profile": page.plot_profile(stats.performance_profile(data, TAUS), out / "profile.png")}
    if not curves.empty:
        images["tuning"] = page.plot_tuning(curves, flags, out / "tuning.png")
    method = (f"compat {args.compat}: the leaderboard's normalisation, IQMs and mean ± SEM of 100 bootstrap IQMs"
              if args.compat else f"IQM with 95 % percentile CIs from a stratified bootstrap ({args.bootstrap} samples, "
              f"seed {args.seed}, resampling {args.resample}); min-max normalised per dataset, 1 = best")
    notes = [f"inputs: {', '.join(args.inputs)}", method,
             f"normaliser: {args.normalizer or 'observed min and max across models'}",
             f"{data['model'].nunique()} models, {data['dataset'].nunique()} datasets, {len(data)} seed scores"]
    tables = [("Groups", group_rows), ("Datasets", datasets), ("Probability of improvement", pairs)]
    if not flags.empty:
        tables.append(("Tuning", flags.drop(columns=["sweep"])))
    if costs is not None:
        tables.append(cost_matrix(costs))
    page.write_html(out / "report.html", "bench report", notes, tables, images)
    if not args.no_mlflow:
        _log_to_mlflow(loaded.sweep_dirs, out)
    return out


def _log_to_mlflow(sweep_dirs: list[Path], out: Path) -> None:
    """Into each input sweep's benchmark run, as the artifact folder report/."""
    from bench.tracking.callback import TRACKING_FILE

    for sweep in sweep_dirs:
        info = sweep / TRACKING_FILE
        if not info.is_file():
            continue
        where = json.loads(info.read_text())
        from mlflow import MlflowClient

        MlflowClient(where["tracking_uri"]).log_artifacts(where["benchmark_run"], str(out), "report")
        print(f"logged to MLflow run {where['benchmark_run']} ({where['experiment']})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        out = build(args)
    except ReportError as exc:
        sys.exit(f"bench.report: error: {exc}")
    print(f"report written to {out}: scores.csv datasets.csv groups.csv pairs.csv tuning.csv"
          f"{' costs.csv' if args.wrote_costs else ''} report.html + PNG figures"
          f"{' submission/ (for the GEO-Bench-2 leaderboard)' if args.wrote_submission else ''}")
