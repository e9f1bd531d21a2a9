"""Search spaces in hydra-optuna-sweeper's grammar -> Optuna distributions.

The grammar is Hydra's own override syntax, parsed by Hydra's OverridesParser:
    choice(a, b, ...)                  categorical
    range(start, stop[, step])         int (or float with a float bound/step), stop exclusive
    interval(low, high)                uniform float (int when both bounds are ints)
    tag(log, interval(low, high))      log-uniform
A value that is not a sweep is a fixed parameter passed to every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException

from ._errors import SearchSpaceError
from ._private_apis import override_value_text

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

# Hydra imports every module under hydra_plugins/ while scanning for plugins (even for --help),
# so optuna is imported inside the functions that need it.

_PRIMITIVES = (str, int, float, bool, type(None))


def _choices(override: Override) -> list[Any]:
    # Optuna stores only primitives, so a list or dict choice (e.g. a U-Net's decoder widths) is
    # kept as its override string; passed back as `key=<string>`, Hydra parses it to the list.
    out = []
    for value in override.sweep_iterator(transformer=Transformer.encode):
        out.append(value if isinstance(value, _PRIMITIVES) else override_value_text(value))
    return out


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep override -> its Optuna distribution (same mapping as hydra-optuna-sweeper)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        if not sweep.list:
            raise ValueError("choice() needs at least one value")
        return CategoricalDistribution(_choices(override))
    if isinstance(sweep, RangeSweep):
        start, stop, step = _bounds(override, sweep.start, sweep.stop, sweep.step)
        if not step or (stop - start) / step <= 0:
            raise ValueError(
                f"range({start}, {stop}, step={step}) holds no value; use a step of the sign of stop - start"
            )
        if sweep.shuffle:
            return CategoricalDistribution(_choices(override))
        if any(isinstance(v, float) for v in (start, stop, step)):
            # range() excludes stop; the last reachable value is the highest grid point below it.
            n_steps = int((stop - start) / step - 1e-9)
            return FloatDistribution(start, start + n_steps * step, step=step)
        n_steps = (int(stop) - int(start) - 1) // int(step)
        return IntDistribution(int(start), int(start) + n_steps * int(step), step=int(step))
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags
        low, high = _bounds(override, sweep.start, sweep.end)
        if not low < high:
            raise ValueError(f"interval({low}, {high}) is empty; its low bound must be below its high bound")
        if log and low <= 0:
            raise ValueError(f"a log interval needs a positive low bound, not {low}")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise SearchSpaceError(f"{override.input_line!r}: unsupported sweep type {type(sweep).__name__}")


def _bounds(override: Override, *values: float | None) -> list[float]:
    """A range's or interval's numbers: Hydra types them optional, its grammar always sets them."""
    given = [v for v in values if v is not None]
    if len(given) != len(values):
        raise SearchSpaceError(f"{override.input_line!r}: a bound of the sweep is missing")
    return given


def parse_search_space(params: Mapping[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """{key: grammar string} -> ({key: distribution}, {key: fixed value string}), keyed without
    the +/++ prefix a key may carry.

    Raises SearchSpaceError naming the offending key and the grammar, so a typo in a search space
    is reported before any trial is launched.
    """
    parser = OverridesParser.create()
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for key, raw in params.items():
        line = f"{key}={raw}"
        try:
            (override,) = parser.parse_overrides([line])
            if not override.is_sweep_override():
                fixed[override.key_or_group] = override.get_value_element_as_str()
                continue
            distributions[override.key_or_group] = to_distribution(override)
        except (HydraException, ValueError, TypeError, ArithmeticError) as exc:
            if isinstance(exc, SearchSpaceError):
                raise
            raise SearchSpaceError(
                f"search space entry {line!r} is malformed: {str(exc).rstrip('.')}. Use choice(a,b,...), range(start,stop[,step]), "
                "interval(low,high) or tag(log, interval(low,high))."
            ) from exc
    return distributions, fixed
