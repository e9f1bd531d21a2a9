"""Everything checked before a sweep creates or launches anything (the dry run stops after it).

Bad input gets a sentence naming the key and the fix: impossible settings, a sampler or pruner that
cannot be built, an unreachable storage, a sweep dir that cannot be written, a malformed search
space or a searched key that exists nowhere, and whatever the app's cell_check says about each
cell's composed config (bench: unknown data, unreachable weights, impossible values).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ._budget import check_settings as check_budget
from ._cells import Cell, bare_key, describe_cell, enumerate_cells, name_cell, split_arguments
from ._database import SQLITE_LIMIT, multi_node_reason, reach
from ._errors import CellError, CellsNotReadyError, SearchSpaceError, SweepConfigError
from ._integrity import check_dir, read_identity
from ._masking import mask_text
from ._objectives import as_text, is_multi, normalized
from ._parallel import map_cells
from ._private_apis import config_files_read_once
from ._repeats import seed_list
from ._samplers import grid_space, is_grid, load_configure, prunes
from ._studies import ON_CHANGE, storage_location
from ._sweepdir import check_creatable
from ._warm import check_source as check_warm_start_source

_ABSENT = object()

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    cells: list[Cell]
    common: list[str]  # overrides every trial gets
    sweep_dir: Path
    storage: str  # the location jobs and driver open: a URL or a journal file path
    axes: list[str]  # the swept keys (task, model, ...)
    n_trials: int = 0
    seeds: list[int] = field(default_factory=list)  # each cell's repeats; empty: none
    # What the app's cell_check found, each problem once -> the cells it stops; the sweep does
    # not start while any is left (a dry run prints the plan first).
    problems: dict[str, list[str]] = field(default_factory=dict)
    configure: Any = None  # hydra.sweeper.custom_search_space, loaded
    grid_sizes: dict[str, int] = field(default_factory=dict)  # grid sampler: cell label -> its grid's size
    label_keys: list[str] = field(default_factory=list)  # what names every cell (hydra.sweeper.label_keys)

    def tuning_trials(self, cell: Cell) -> int:
        """With repeats, a cell with nothing to search (or n_trials=0) goes straight to them; with
        the grid sampler, a cell runs no more trials than its grid has points. A cell may give its own
        count (hydra.sweeper.n_trials_key)."""
        if self.seeds and not cell.distributions:
            return 0
        n_trials = self.n_trials if cell.n_trials is None else cell.n_trials
        return min(n_trials, self.grid_sizes.get(cell.label, n_trials))

    def repeats_opener(self, storage: Any) -> Any:
        from ._repeats import opener

        return opener(self.seeds, storage)


def make_plan(settings: Any, config: DictConfig, loader: Any, arguments: list[str], launcher: Any) -> SweepPlan:
    _check_settings(settings)
    check_budget(settings.budget)
    check_warm_start_source(settings.warm_start)
    seeds = seed_list(
        settings.repeats,
        OmegaConf.to_container(settings.seeds) if OmegaConf.is_config(settings.seeds) else settings.seeds,
    )
    if settings.n_trials == 0 and not seeds:
        raise SweepConfigError(
            "hydra.sweeper.n_trials=0 runs no tuning trial, and no repeats are asked for "
            "(hydra.sweeper.repeats): nothing would run"
        )
    for what in ("sampler", "pruner"):
        if not (what == "sampler" and is_grid(settings.sampler)):  # its grid is each cell's (_samplers.py)
            _check_buildable(what, getattr(settings, what))
    configure = load_configure(settings.custom_search_space)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    check_creatable(sweep_dir, "the sweep directory", "hydra.sweep.dir")
    storage = storage_location(settings.storage, str(sweep_dir))
    _check_storage(storage)
    _warn_sqlite_multi_node(storage, config)
    check_dir(sweep_dir, storage, dry_run=settings.dry_run)  # its results, identity and journal agree

    params = cast(
        "dict[str, Any] | None",
        OmegaConf.to_container(settings.params, resolve=False)
        if OmegaConf.is_config(settings.params)
        else settings.params,
    )
    declared = cast(
        "dict[str, Any] | None",
        OmegaConf.to_container(settings.cells, resolve=True) if OmegaConf.is_config(settings.cells) else settings.cells,
    )
    columns = cast(
        "dict[str, str] | None",
        OmegaConf.to_container(settings.columns) if OmegaConf.is_config(settings.columns) else settings.columns,
    )
    identity = read_identity(sweep_dir)
    known_axes = identity.get("axes", [])
    label_keys = resumed_label_keys(identity, list(settings.label_keys or []), storage)
    split = split_arguments(arguments, loader, declared, known_axes)
    cells = enumerate_cells(split, known_axes)
    check = get_method(settings.cell_check) if settings.cell_check else None
    value_check = get_method(settings.value_check) if settings.value_check else None
    problems: dict[str, list[str]] = {}  # what the app's cell_check found -> the cells it stops

    def prepare(index: int) -> tuple[Cell, list[CellError]]:
        """Compose one cell, describe it and check it; the cell comes back filled in."""
        cell = cells[index]
        cell_cfg = loader.load_sweep_config(config, split.common + cell.overrides)
        name_cell(cell, cell_cfg, label_keys)
        describe_cell(
            cell,
            cell_cfg,
            split,
            params or {},
            search_space_key=settings.search_space_key,
            metric_key=settings.metric_key,
            direction_key=settings.direction_key,
            default_direction=settings.direction,
            columns=columns or {},
            exclude_key=settings.search_exclude_key,
            n_trials_key=settings.n_trials_key,
        )
        if seeds and OmegaConf.select(cell_cfg, settings.seed_key or "", default=_ABSENT) is _ABSENT:
            raise SweepConfigError(
                f"cell {cell.label}: repeats set each seed at hydra.sweeper.seed_key="
                f"{settings.seed_key!r}, which is not a key of its config; name the key your app "
                "seeds from"
            )
        found = _cell_problems(check, cell_cfg) if check is not None else []
        if value_check is not None and not found:
            _check_search_edges(cell, cell_cfg, value_check)
        return cell, found

    with config_files_read_once(loader):  # each config file parsed once, not once per cell (~2 s of 38 cells)
        prepared = map_cells(len(cells), prepare)  # on several cores when there are many cells
    cells = [cell for cell, _ in prepared]
    for cell, found in prepared:
        for problem in found:
            problems.setdefault(str(problem), []).append(cell.label)
    grid_sizes = {}
    if is_grid(settings.sampler):
        import math

        grid_sizes = {c.label: math.prod(len(v) for v in grid_space(c.label, c.distributions).values()) for c in cells}
    plan = SweepPlan(
        cells,
        split.common,
        sweep_dir,
        storage,
        [bare_key(k) for k in split.cell_axes],
        settings.n_trials,
        seeds,
        problems,
        configure,
        grid_sizes,
        label_keys,
    )
    if settings.check_resources and not problems:  # a cell's own problem says more than the cluster's
        _check_launcher_can_run_a_trial(launcher, [c.config for c in cells])
    return plan


def resumed_label_keys(identity: dict[str, Any], configured: list[str], storage: str) -> list[str]:
    """The label keys a sweep dir names its cells with, so that a resume finds its studies (they and
    the results rows are found by label): those its sweep.json records; for a new dir,
    hydra.sweeper.label_keys. A sweep.json without them (a dir made before label keys existed, or one
    restored by hand) gets the configured ones only if every cell label its studies hold already
    starts with them, in order (its labels would not change); else none, as when it was made."""
    configured = [str(k) for k in configured]
    if not identity:
        return configured
    if "label_keys" in identity:
        return [str(k) for k in identity["label_keys"]]
    if not configured:
        return []
    from ._studies import STUDY_CELL, open_storage, sweep_studies

    if "://" not in storage and not Path(storage).exists():
        return configured  # no study yet (and none is created here: a dry run creates nothing)
    labels = {r.attrs.get(STUDY_CELL, "") for r in sweep_studies(open_storage(storage), identity["sweep_id"]).values()}
    keys = [[part.split("=", 1)[0] for part in str(label).split(",")] for label in labels]
    return configured if all(k[: len(configured)] == configured for k in keys) else []


def _cell_problems(check: Any, cell_cfg: DictConfig) -> list[CellError]:
    """The CellErrors the app's cell_check raises for a cell: one, or an ExceptionGroup of several
    (bench's finds a missing dataset and unreachable weights in one pass). Anything else is a bug
    and propagates."""
    try:
        check(cell_cfg)
    except CellError as exc:
        return [exc]
    except ExceptionGroup as group:
        matched, rest = group.split(CellError)
        if rest is not None:
            raise
        return list(_leaves(matched)) if matched is not None else []
    return []


def _leaves(group: BaseExceptionGroup[CellError]) -> Iterator[CellError]:
    for exc in group.exceptions:
        yield from (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])


def problems_error(plan: SweepPlan) -> CellsNotReadyError:
    """Each problem once, with the cells it stops: one missing dataset is one line, however many
    models share its task. A single problem that stops every cell is just its sentence."""
    stopped = {label for labels in plan.problems.values() for label in labels}
    if len(plan.problems) == 1 and len(stopped) == len(plan.cells):
        return CellsNotReadyError(next(iter(plan.problems)))
    lines = [
        f"{len(plan.problems)} problem(s) stop {len(stopped)} of {len(plan.cells)} cell(s) before anything is launched:"
    ]
    for text, labels in plan.problems.items():
        cells = labels[0] if len(labels) == 1 else f"{len(labels)} cells: {'; '.join(labels)}"
        lines.append(f"- {text} [{cells}]")
    return CellsNotReadyError("\n".join(lines))


def _check_search_edges(cell: Cell, cell_cfg: DictConfig, value_check: Any) -> None:
    """Run value_check with every edge of the cell's search space set. All keys move together, one
    round per edge (round r sets each key to its r-th edge), so a 24-cell plan checks each cell a
    few times rather than once per edge; a round that fails is retried key by key to name the value."""
    parser = OverridesParser.create()
    # A fixed value of the space goes to every trial: checked with each round, as the edges are.
    edges = {key: [parser.parse_override(f"{key}={value}").value()] for key, value in cell.fixed.items()}
    edges.update({key: _edges(key, distribution) for key, distribution in cell.distributions.items()})
    rounds = max((len(values) for values in edges.values()), default=0)
    for r in range(rounds):
        values = {key: options[r % len(options)] for key, options in edges.items()}
        try:
            value_check(_with_values(cell_cfg, values))
        except Exception:
            for key, value in values.items():
                try:
                    value_check(_with_values(cell_cfg, {key: value}))
                except Exception as exc:  # the app's own sentence, with where the value came from
                    source = f" ({cell.params[key]})" if key in cell.distributions else " (fixed)"
                    raise SearchSpaceError(
                        f"cell {cell.label}: the search space gives {key} the value {value!r}"
                        f"{source}, which no trial can use: {exc}"
                    ) from None
            raise  # only the combination fails: the app's own error says why


def _with_values(cell_cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    variant = copy.deepcopy(cell_cfg)
    with open_dict(variant):
        for key, value in values.items():
            OmegaConf.update(variant, key, value, merge=False, force_add=True)
    return variant


def _edges(key: str, distribution: Any) -> list[Any]:
    from optuna.distributions import CategoricalDistribution

    if not isinstance(distribution, CategoricalDistribution):
        return [distribution.low, distribution.high]
    parser = OverridesParser.create()
    # Non-primitive choices are kept in override form (space.py); a trial's job parses them back.
    return [parser.parse_override(f"{key}={c}").value() if isinstance(c, str) else c for c in distribution.choices]


def _check_launcher_can_run_a_trial(launcher: Any, cell_configs: list[DictConfig]) -> None:
    """A SLURM request no partition node can hold would pend forever: refused now, for each distinct
    request the cells make (a cell's own hydra.launcher: its model may ask for more than the
    default). Ray's own check needs a connection to the cluster, so it runs in the dispatcher."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    if isinstance(launcher, SlurmLauncher):
        from ._slurm import check_partition_fits

        requests = [
            cast(dict[str, Any], OmegaConf.to_container(c.hydra.launcher, resolve=True)) for c in cell_configs
        ] or [dict(launcher.params)]
        for request in {repr(sorted(r.items())): r for r in requests}.values():
            check_partition_fits(request)


def describe_plan(plan: SweepPlan, settings: Any, launcher: Any) -> str:
    pruner = (settings.pruner or {}).get("_target_", "none")
    trials = sum(plan.tuning_trials(c) for c in plan.cells)
    counted = " (completed; pruned ones are replaced)" if prunes(settings.pruner) and not settings.count_pruned else ""
    repeats = f" + {len(plan.seeds)} repeats each (seeds {plan.seeds})" if plan.seeds else ""
    lines = [
        f"{len(plan.cells)} cell(s): {trials} tuning trials{counted}{repeats}, "
        f"n_jobs={settings.n_jobs}, launcher={type(launcher).__name__}, pruner={pruner}",
        f"sweep dir {plan.sweep_dir}, storage {mask_text(plan.storage)}",
    ]
    if folds := settings.folds:
        lines.append(
            f"k-fold tuning: {folds} folds, {folds} trainings per tuning trial ({folds}x a single split's cost, "
            "which budgets count as measured); repeats train once on the whole training set"
        )
    budget = settings.budget or {}
    limits = [
        f"{key}={budget.get(key)}"
        for key in ("gpu_hours", "cpu_hours", "per_cell", "patience", "min_delta")
        if budget.get(key) is not None and (key != "min_delta" or budget.get("patience"))
    ]
    if limits or settings.warm_start:
        lines.append(
            "budget: "
            + (", ".join(limits) or "none")
            + (
                f"; warm start from {settings.warm_start} (top {settings.warm_start_top_k})"
                if settings.warm_start
                else ""
            )
        )
    multi = [c.label for c in plan.cells if is_multi(c.direction)]
    if multi and prunes(settings.pruner):
        lines.append(
            f"pruning is off for the multi-objective cell(s) {', '.join(multi)}: Optuna cannot prune a "
            "study with several objectives"
        )
    for cell in plan.cells:
        lines.append(f"\ncell {cell.label}: {as_text(cell.direction)} {as_text(cell.metric) or 'the job return value'}")
        for key, text in cell.params.items():
            kind = type(cell.distributions[key]).__name__ if key in cell.distributions else "fixed"
            lines.append(f"  {key}: {text}  [{kind}]")
    return "\n".join(lines)


def _check_settings(s: Any) -> None:
    problems = []
    if not 0.0 <= s.max_failure_rate <= 1.0:
        problems.append(f"hydra.sweeper.max_failure_rate={s.max_failure_rate} must be within [0, 1]")
    if s.n_trials < 0:
        problems.append(f"hydra.sweeper.n_trials={s.n_trials} must be at least 0 (0: straight to the repeats)")
    folds = s.folds
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        problems.append(
            f"hydra.sweeper.folds={folds!r} is not possible: k-fold tuning needs at least 2 folds (null: one split)"
        )
    if s.n_jobs < 1:
        problems.append(f"hydra.sweeper.n_jobs={s.n_jobs} must be at least 1 (with bench: launcher.parallel_trials)")
    for key in ("poll_interval", "progress_every_s"):
        if not getattr(s, key) > 0:
            problems.append(f"hydra.sweeper.{key}={getattr(s, key)} must be a positive number of seconds")
    if s.on_change not in ON_CHANGE:
        problems.append(f"hydra.sweeper.on_change={s.on_change!r} must be one of {list(ON_CHANGE)}")
    try:
        s.direction = normalized(s.direction, "hydra.sweeper.direction")
    except SweepConfigError as exc:
        problems.append(str(exc))
    else:
        if is_multi(s.direction) and prunes(s.pruner):
            problems.append(
                f"hydra.sweeper.direction={s.direction} makes every study multi-objective, which Optuna "
                "cannot prune, and a pruner is set: use hydra/sweeper/pruner=none"
            )
    if is_grid(s.sampler) and s.custom_search_space:
        problems.append(
            "the grid sampler needs its whole grid up front, and hydra.sweeper.custom_search_space adds "
            "params trial by trial: use another sampler with custom_search_space"
        )
    if problems:
        raise SweepConfigError("; ".join(problems))


def _check_buildable(what: str, node: Any) -> None:
    """Build the sampler or pruner once, so a _target_ typo or a bad argument is a sentence now
    rather than a failure of every cell later."""
    if not node:
        return
    try:
        instantiate(node)
    except Exception as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        target = node.get("_target_")
        raise SweepConfigError(
            f"hydra.sweeper.{what} ({target}) cannot be built: {type(cause).__name__}: {cause}. Pick one with "
            f"hydra/sweeper/{what}=<option> (see --help) or fix hydra.sweeper.{what}._target_ and its arguments."
        ) from None


def _warn_sqlite_multi_node(location: str, config: DictConfig) -> None:
    """SQLite named for trials on several machines: allowed (one node may be all there is), said."""
    if not location.startswith("sqlite:"):
        return
    reason = multi_node_reason(config)
    if reason is not None:
        log.warning(
            "hydra.sweeper.storage=%s is SQLite, but %s: SQLite's file locking is unreliable on shared "
            "filesystems, and %s. Use hydra.sweeper.storage=postgresql://... (or leave it unset for the journal file)",
            location,
            reason,
            SQLITE_LIMIT,
        )


def _check_storage(location: str) -> None:
    """Reach the storage without creating anything in it."""
    if "://" not in location:
        check_creatable(Path(location), "the Optuna journal file", "hydra.sweeper.storage", is_dir=False)
        return
    if location.startswith("sqlite:"):
        check_creatable(
            Path(location.split(":///", 1)[-1]), "the SQLite storage", "hydra.sweeper.storage", is_dir=False
        )
        return
    problem = reach(location)
    if problem is not None:
        raise SweepConfigError(
            f"hydra.sweeper.storage={mask_text(location)} {problem}. Check the URL, the credentials and that the "
            "database server is up, or leave storage unset for a journal file in the sweep dir."
        )
