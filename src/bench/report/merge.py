"""Which rows of the report's inputs are the same experiment, and what each model is called.

A score's identity is its backbone, dataset, partition, frozen_or_full_ft, decoder and seed, plus
any key a sweep swept as cells (inputs.py). The inputs merge by it:
  - `--where KEY=VALUE` keeps the rows whose KEY is VALUE (a key given twice: either value; two
    keys: both), before anything else, so it also sets aside what would otherwise conflict;
  - a score given by several inputs with the same identity and value (one submission's rows in
    another) is one score, and the console says so;
  - the same identity with another value is refused, naming both inputs: nothing can tell which
    one is right;
  - experiments of one backbone that differ on a dataset stay apart in every table: the keys they
    differ in join the model's name (`prithvi [frozen]`, `x [0.10x_train]`). Each other backbone
    with a single value of such a key gets it too (`resnet50 [full_ft]`), so that no name is
    ambiguous; a key whose value only changes from dataset to dataset (a detection decoder) does
    not split a model;
  - one experiment of one backbone on one dataset whose seeds come from two inputs, neither
    holding them all (10 "seeds" of terramind_v1_large on biomassters in submissions 114be1f0 and
    2ce4a907), is two tunings, not one model's seeds. Its model is split by input (`x [sweepA]`,
    `x [sweepB]`) on every dataset, so each keeps its own complete set. Chosen over refusing: a
    re-run can then be compared with the first run, and neither is silently pooled into one
    interval; refusing would leave no way to report the two together;
  - per_input (`--compat`): a model held by several inputs is always split by input, as the
    leaderboard lists each submission apart and bootstraps it on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import ReportError
from bench.report.inputs import Source, latest, read
from bench.report.leaderboard import conform

FIXED = ["frozen_or_full_ft", "partition", "decoder"]  # identity keys besides backbone, dataset and seed


@dataclass
class Inputs:
    scores: pd.DataFrame  # leaderboard layout, other columns, `source` (the input), then `model` (its name here)
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)  # results.csv rows; `model` renamed likewise
    repeats: pd.DataFrame = field(default_factory=pd.DataFrame)  # repeats.csv rows (every state, version)
    sweep_dirs: list[Path] = field(default_factory=list)
    own: pd.Series = field(default_factory=lambda: pd.Series(dtype=bool))  # per scores row: from a sweep
    notes: list[str] = field(default_factory=list)  # what the merge did, for the console and the page


def load(
    paths: list[str], tracking_uri: str | None = None, where: Sequence[str] = (), per_input: bool = False
) -> Inputs:
    return merge(read(paths, tracking_uri), where, per_input)


def merge(sources: list[Source], where: Sequence[str] = (), per_input: bool = False) -> Inputs:
    names = [s.name for s in sources]
    shown = {s.path: s.name if names.count(s.name) == 1 else s.path for s in sources}
    swept = list(dict.fromkeys(k for s in sources for k in s.swept))
    frames = [s.scores.assign(source=s.path, _own=s.own) for s in sources if not s.scores.empty]
    # Whole-number columns stay whole where another input lacks them (not 6.28e+17 for an experiment id).
    frames = [f.astype({c: "Int64" for c in f.select_dtypes("int64").columns}) for f in frames]
    scores = conform(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["source", "_own"]))
    tuning = _joined([s.tuning.assign(source=s.path) for s in sources if not s.tuning.empty])
    repeats = _joined([s.repeats.assign(source=s.path) for s in sources if not s.repeats.empty])
    scores, tuning, repeats = _where(where, scores, tuning, repeats)
    if scores.empty and tuning.empty and repeats.empty:
        raise ReportError(
            f"{', '.join(s.path for s in sources)} hold(s) no test score and no tuning trial yet: "
            "report on a sweep once its first trial has finished"
        )
    scores["test metric"] = pd.to_numeric(scores["test metric"], errors="coerce")
    _refuse_conflicts(scores, swept)

    every = pd.concat(
        [_identity(scores, swept)] + [_identity(f[latest(f)], swept) for f in (tuning, repeats) if not f.empty],
        ignore_index=True,
    )
    parts = _label_parts(every, swept)
    scores["model"] = _base(_identity(scores, swept), parts)
    split = _split(scores, swept, per_input)
    for frame in (scores, tuning, repeats):
        if not frame.empty:
            base = _base(_identity(frame, swept), parts)
            frame["model"] = [
                _with_input(name, shown[source]) if name in split else name
                for name, source in zip(base, frame["source"])
            ]
    identity = _identity(scores, swept).assign(model=scores["model"], Seed=_text(scores["Seed"]))
    repeated = identity.duplicated(keep="first")
    notes = [note for s in sources for note in s.notes]
    if repeated.any():
        notes.append(
            f"{int(repeated.sum())} score(s) given again with the same value by "
            f"{', '.join(dict.fromkeys(scores.loc[repeated, 'source']))}: counted once"
        )
    scores = scores[~repeated].reset_index(drop=True)
    if split:
        notes.append(
            f"held by several inputs, so scored per input: {', '.join(sorted(split))}"
            if per_input
            else f"seeds of one experiment came from several inputs, so kept apart by input: {', '.join(sorted(split))}"
        )
    for note in notes:
        print(f"bench.report: {note}", file=sys.stderr)
    own = scores.pop("_own").astype(bool)
    return Inputs(scores, tuning, repeats, [s.directory for s in sources if s.directory is not None], own, notes)


def _with_input(model: str, source: str) -> str:
    return f"{model[:-1]}, {source}]" if model.endswith("]") else f"{model} [{source}]"


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _keys(swept: list[str]) -> list[str]:
    """The identity columns of _identity, seed aside."""
    return ["backbone", "dataset", *FIXED, *swept]


def _text(column: pd.Series) -> pd.Series:
    """Values as text for comparing and naming: a whole float as a whole number, missing as ''."""

    def one(value: object) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return column.map(one).astype(object)


def _identity(frame: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """backbone, dataset, the FIXED keys and the swept keys of each row, as text."""

    def column(name: str) -> pd.Series:
        return _text(frame[name]) if name in frame.columns else pd.Series("", index=frame.index, dtype=object)

    partition = column("partition_name")
    out = pd.DataFrame(
        {
            "backbone": column("backbone"),
            "dataset": column("dataset"),
            "frozen_or_full_ft": column("frozen_or_full_ft"),
            "partition": partition.where(partition != "", column("partition name")),
            "decoder": column("decoder"),
        },
        index=frame.index,
    )
    for key in swept:
        out[key] = column(key)
    return out


def _where(where: Sequence[str], *frames: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    wanted: dict[str, set[str]] = {}
    for condition in where:
        key, sep, value = condition.partition("=")
        if not sep or not key:
            raise ReportError(f"--where {condition}: write it as KEY=VALUE, e.g. --where frozen_or_full_ft=frozen")
        wanted.setdefault(key, set()).add(value)
    known = set().union(*(f.columns for f in frames))
    for key, values in wanted.items():
        if key not in known:
            raise ReportError(
                f"--where {key}=...: no input has a column {key!r}; give one of "
                f"{', '.join(sorted(c for c in frames[0].columns if not c.startswith('_')))}"
            )
        frames = tuple(f[_matches(f, key, values)].reset_index(drop=True) if not f.empty else f for f in frames)
        if all(f.empty for f in frames):
            raise ReportError(f"--where {key}={'|'.join(sorted(values))} keeps no row of the inputs: check the value")
    return frames


def _matches(frame: pd.DataFrame, key: str, values: set[str]) -> pd.Series:
    if key not in frame.columns:
        return pd.Series(False, index=frame.index)
    hit = _text(frame[key]).isin(values)
    numbers = pd.to_numeric(pd.Series(sorted(values)), errors="coerce").dropna()
    if len(numbers):
        hit |= pd.to_numeric(frame[key], errors="coerce").isin(numbers)
    return hit


def _refuse_conflicts(scores: pd.DataFrame, swept: list[str]) -> None:
    ident = _identity(scores, swept).assign(
        Seed=_text(scores["Seed"]), score=scores["test metric"], source=scores["source"]
    )
    spread = ident.groupby(_keys(swept) + ["Seed"], sort=False)["score"].transform("nunique")
    clashing = ident[spread > 1]
    if clashing.empty:
        return
    first = clashing.iloc[0]
    same = clashing[(clashing[_keys(swept) + ["Seed"]] == first[_keys(swept) + ["Seed"]]).all(axis=1)]
    other = same[same["score"] != first["score"]].iloc[0]
    named = {"frozen_or_full_ft": "{}", "partition": "partition {}", "decoder": "decoder {}"}
    experiment = ", ".join(named.get(k, k + "={}").format(first[k]) for k in FIXED + swept if first[k] != "")
    cases = clashing.groupby(_keys(swept) + ["Seed"], sort=False).ngroups
    raise ReportError(
        f"{first['source']} and {other['source']} give different scores for the same experiment and seed "
        f"({first['backbone']} on {first['dataset']}, seed {first['Seed']}, {experiment}: {float(first['score'])!r} vs "
        f"{float(other['score'])!r}; {cases} such seed(s) in all): give only one of them, or set one's rows aside with "
        "--where"
    )


def _label_parts(every: pd.DataFrame, swept: list[str]) -> dict[str, set[str]]:
    """Per identity key that tells experiments of one backbone apart on some dataset: the backbones
    whose names show it (those it tells apart, and those with a single value of it)."""
    parts = {}
    for key in FIXED + swept:
        varies = every.groupby(["backbone", "dataset"])[key].nunique()
        if (varies > 1).any():
            values = every.groupby("backbone")[key].nunique()
            parts[key] = set(varies[varies > 1].index.get_level_values("backbone")) | set(values[values == 1].index)
    return parts


def _base(ident: pd.DataFrame, parts: dict[str, set[str]]) -> pd.Series:
    """Model names without the input: the backbone, then its experiment's distinguishing values."""
    names = []
    for _, row in ident.iterrows():
        shown = [
            row[k] if k in FIXED else f"{k}={row[k]}"
            for k, backbones in parts.items()
            if row["backbone"] in backbones and row[k] != ""
        ]
        names.append(f"{row['backbone']} [{', '.join(shown)}]" if shown else row["backbone"])
    return pd.Series(names, index=ident.index, dtype=object)


def _split(scores: pd.DataFrame, swept: list[str], per_input: bool) -> set[str]:
    """Model names whose scores on some dataset come from several inputs, no one holding them all
    (per_input: from several inputs at all)."""
    split = set()
    rows = _identity(scores, swept).assign(
        model=scores["model"],
        source=scores["source"],
        row=_text(scores["Seed"]) + "|" + scores["test metric"].astype(str),
    )
    for (model, _), cell in rows.groupby(["model", "dataset"], sort=False):
        held = cell.groupby("source", sort=False)["row"].agg(set)
        union = set().union(*held)
        if len(held) > 1 and (per_input or not any(h == union for h in held)):
            split.add(model)
    return split
