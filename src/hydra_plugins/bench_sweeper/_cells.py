"""Command line -> cells: the cartesian product of plain sweeps (task=a,b model=x,y ...).

Cells may also be declared in config (`hydra.sweeper.cells`, e.g. by an experiment preset); a key
swept on the command line replaces the declared one. Each cell is composed on its own, so its
metric, direction and search space are its own: a minimised and a maximised task can share one
command, and a task or preset can narrow the space.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from omegaconf import DictConfig, ListConfig, OmegaConf

from ._errors import SearchSpaceError, SweepConfigError
from ._objectives import as_text, directions, normalized
from ._space import parse_search_space

# `a,b` and glob(...) enumerate cells; choice()/range()/interval()/tag() are searched by Optuna.
_CELL_SWEEPS = (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.GLOB_CHOICE_SWEEP)
_ABSENT = object()


@dataclass
class SplitArguments:
    common: list[str]  # plain overrides passed to every trial
    cell_axes: dict[str, list[str]]  # key -> override lines to take the product of
    search: dict[str, str]  # key (with its +/++ prefix, if any) -> grammar string, from the command line
    fixed_keys: set[str]  # keys the user pinned to one value (removed from every search space)


@dataclass
class Cell:
    index: int
    overrides: list[str]  # e.g. ["task=synthetic_seg", "model=prithvi_tiny"]
    label: str  # e.g. "task=synthetic_seg,model=prithvi_tiny" ("default" with no axes and no label_keys)
    coordinates: dict[str, str]  # e.g. {"task": "synthetic_seg", "model": "prithvi_tiny"}
    direction: str | list[str] = "minimize"  # a list: one per objective (a multi-objective cell)
    metric: str | list[str] | None = None
    columns: dict[str, Any] = field(default_factory=dict)  # hydra.sweeper.columns, read from its config
    params: dict[str, str] = field(default_factory=dict)  # the grammar strings, for display
    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    study_name: str = ""
    config: Any = None  # the cell's composed config (a DictConfig once planned), for observers
    n_trials: int | None = None  # its own trial count (hydra.sweeper.n_trials_key); None: the sweep's


def bare_key(key: str) -> str:
    """'+a.b' / '++a.b' / '~a.b' -> 'a.b'."""
    return key.lstrip("+~")


def split_arguments(
    arguments: list[str],
    config_loader: ConfigLoader,
    declared_cells: dict[str, Any] | None = None,
    known_axes: list[str] | None = None,
) -> SplitArguments:
    """known_axes: the axes of the sweep being resumed; a key pinned to one value that was an axis
    there stays an axis here, so `task=a` resumes the cell `task=a` of a sweep started with `task=a,b`."""
    parser = OverridesParser.create(config_loader=config_loader)
    common: list[str] = []
    cell_axes: dict[str, list[str]] = {}
    search: dict[str, str] = {}
    fixed: set[str] = set()
    for override in parser.parse_overrides(_declared_cell_lines(declared_cells) + list(arguments)):
        key = override.get_key_element()
        line = override.input_line or ""  # set for every override parsed from text
        if override.value_type in _CELL_SWEEPS:
            cell_axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif key in (known_axes or ()) and not override.is_sweep_override():
            cell_axes[key] = [line]
        elif override.is_sweep_override():
            prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
            search[prefix + key] = _value_text(override)
        else:
            common.append(line)
            fixed.add(bare_key(key))
            cell_axes.pop(key, None)  # pinned on the command line: no longer an axis
    return SplitArguments(common, cell_axes, search, fixed)


def _declared_cell_lines(declared: dict[str, Any] | None) -> list[str]:
    """{task: [a, b], model: x} -> ["task=a,b", "model=x"]: config-declared cells in command-line form,
    placed before the real arguments so that a key swept there replaces the declared one."""
    lines = []
    for key, values in (declared or {}).items():
        values = values if isinstance(values, (list, tuple)) else [values]
        lines.append(f"{key}={','.join(str(v) for v in values)}")
    return lines


def _value_text(override: Override) -> str:
    assert override.input_line is not None
    return override.input_line.split("=", 1)[1]


def enumerate_cells(split: SplitArguments, known_axes: list[str] | None = None) -> list[Cell]:
    """The product of the axes; labels list the sweep's known axes first, in their original order."""
    known = known_axes or []
    keys = [k for k in known if k in split.cell_axes] + [k for k in split.cell_axes if k not in known]
    cells = []
    for index, combo in enumerate(itertools.product(*(split.cell_axes[k] for k in keys))):
        coordinates = {bare_key(k): line.split("=", 1)[1] for k, line in zip(keys, combo)}
        label = ",".join(f"{k}={v}" for k, v in coordinates.items()) or "default"
        cells.append(Cell(index=index, overrides=list(combo), label=label, coordinates=coordinates))
    return cells


def name_cell(cell: Cell, cell_cfg: DictConfig, label_keys: list[str]) -> None:
    """Relabel a composed cell so that each of `label_keys` names it, swept or not: its swept value,
    else the option its config group chose (hydra.runtime.choices), else its config value when that
    is a plain value. They come first, in their order, then the cell's other swept keys; a key with
    no value (a group with no option chosen) is left out. Coordinates stay the swept keys only."""
    if not label_keys:
        return
    choices = OmegaConf.select(cell_cfg, "hydra.runtime.choices", default=None) or {}
    parts: dict[str, str] = {}
    for key in (bare_key(k) for k in label_keys):
        value = cell.coordinates.get(key)
        if value is None:
            value = choices.get(key)
        if value is None:
            found = OmegaConf.select(cell_cfg, key, default=None)
            value = None if OmegaConf.is_config(found) or found is None else str(found)
        if value is not None:
            parts[key] = str(value)
    parts.update({k: v for k, v in cell.coordinates.items() if k not in parts})
    cell.label = ",".join(f"{k}={v}" for k, v in parts.items()) or "default"


def _select(cfg: DictConfig, key: str | None) -> Any:
    return OmegaConf.select(cfg, key, default=None) if key else None


def describe_cell(
    cell: Cell,
    cell_cfg: DictConfig,
    split: SplitArguments,
    sweeper_params: dict[str, Any] | None,
    *,
    search_space_key: str | None,
    metric_key: str | None,
    direction_key: str | None,
    default_direction: str,
    columns: dict[str, str] | None = None,
    exclude_key: str | None = None,
    n_trials_key: str | None = None,
) -> None:
    """Fill in the cell's metric, direction, columns and search space from its composed config.

    Search-space layers, weakest first: the cell's `search_space` node < hydra.sweeper.params <
    search sweeps on the command line. Keys pinned on the command line are not searched. A searched
    key must exist in the cell's config unless it is written `+key` (add) or `++key`, as in Hydra's
    override grammar: a typo would otherwise be added silently and ignored by every trial.
    """
    cell.config = cell_cfg
    metric = _select(cell_cfg, metric_key)
    cell.metric = list(metric) if isinstance(metric, ListConfig) else metric
    given = _select(cell_cfg, direction_key)
    where = direction_key if given is not None else "hydra.sweeper.direction"
    cell.direction = normalized(given if given is not None else default_direction, f"cell {cell.label}: {where}")
    if isinstance(cell.metric, list) and len(cell.metric) != len(directions(cell.direction)):
        raise SweepConfigError(
            f"cell {cell.label}: {metric_key} lists {len(cell.metric)} metrics ({as_text(cell.metric)}) "
            f"but {where} {len(directions(cell.direction))} direction(s) ({as_text(cell.direction)}): "
            "give one direction per metric, in the same order"
        )
    cell.columns = {name: _select(cell_cfg, key) for name, key in (columns or {}).items()}
    own = _select(cell_cfg, n_trials_key)
    if own is not None and (isinstance(own, bool) or not isinstance(own, int) or own < 0):
        raise SweepConfigError(
            f"cell {cell.label}: {n_trials_key}={own!r} is not a trial count: give a whole number "
            "of at least 0 (0: straight to the repeats), or null for hydra.sweeper.n_trials"
        )
    cell.n_trials = own

    params: dict[str, Any] = {}
    space_node = _select(cell_cfg, search_space_key)
    if space_node is not None:
        params.update(flatten(_mapping(OmegaConf.to_container(space_node, resolve=True), search_space_key, cell)))
    params.update(flatten(_mapping(sweeper_params or {}, "hydra.sweeper.params", cell)))
    params.update(split.search)
    excluded = set(split.fixed_keys) | {bare_key(str(k)) for k in (_select_list(cell_cfg, exclude_key))}
    params = {str(k): str(v) for k, v in params.items() if bare_key(str(k)) not in excluded}
    try:
        cell.distributions, cell.fixed = parse_search_space(params)
    except SearchSpaceError as exc:
        raise SearchSpaceError(f"cell {cell.label}: {exc}") from exc
    missing = [k for k in params if not k.startswith("+") and OmegaConf.select(cell_cfg, k, default=_ABSENT) is _ABSENT]
    if missing:
        raise SearchSpaceError(
            f"cell {cell.label}: searched key(s) {', '.join(missing)} exist nowhere in the config, so every trial "
            "would ignore them. Fix the name, or write +key to add a new key on purpose."
        )
    cell.params = {bare_key(k): v for k, v in params.items()}


def _mapping(space: Any, where: str | None, cell: Cell) -> dict[str, Any]:
    """A search space is {config key: domain}; a list or a value there is refused, naming it."""
    if not isinstance(space, dict):
        shown = repr(space) if len(repr(space)) <= 80 else repr(space)[:77] + "..."
        raise SearchSpaceError(
            f"cell {cell.label}: {where} must map config keys to search domains "
            f"(hparams.lr: tag(log, interval(1e-5, 1e-2)), ...), not a {type(space).__name__}: {shown}"
        )
    return space


def _select_list(cell_cfg: DictConfig, key: str | None) -> list[Any]:
    value = _select(cell_cfg, key)
    if value is None:
        return []
    if not OmegaConf.is_list(value):
        raise SweepConfigError(
            f"{key} lists the search-space keys a cell does not search; it must be a list, "
            f"not {OmegaConf.to_container(value) if OmegaConf.is_config(value) else value!r}"
        )
    return list(value)


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{a: {b: "interval(0,1)"}} and {"a.b": "interval(0,1)"} both mean key a.b."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def trial_overrides(cell: Cell, common: list[str], values: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    """Everything one job needs on its command line.

    Parameters use `++` (add or override) because a searched key written +key need not exist in
    the composed config; `extra` holds the trial node and what observers hand the job (run ids).
    """
    lines = list(common) + list(cell.overrides)
    lines += [f"++{key}={value}" for key, value in cell.fixed.items()]
    # bare keys: a custom_search_space may suggest `+key` names for keys the config lacks
    lines += [f"++{bare_key(key)}={override_value(value)}" for key, value in values.items()]
    lines += [f"++{key}={override_value(value)}" for key, value in extra.items()]
    return lines


def override_value(value: Any) -> str:
    """A value in override syntax."""
    if isinstance(value, str):
        # Categorical strings were stored in override form already (space.py); quote only what
        # the grammar would otherwise misread.
        return value if _is_safe(value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_PARSER: list[OverridesParser] = []  # building the ANTLR parser costs ~2 ms: reuse one


def _is_safe(text: str) -> bool:
    """True when `k=<text>` parses back to one value (not a sweep, not a syntax error)."""
    if not _PARSER:
        _PARSER.append(OverridesParser.create())
    try:
        return not _PARSER[0].parse_override(f"k={text}").is_sweep_override()
    except Exception:
        return False
