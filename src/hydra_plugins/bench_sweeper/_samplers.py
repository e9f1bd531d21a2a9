"""What depends on the chosen sampler or pruner: the grid sampler's per-cell grid, the custom search
space hook, and pruning (which Optuna cannot do for multi-objective studies).

    grid    GridSampler needs its grid up front: each cell's own search space, every param a
            choice() or a range() (an interval has no grid). A cell runs at most its grid's size.
    custom  hydra.sweeper.custom_search_space: a dotted path to configure(cfg, trial), called after
            the declared params are sampled, as hydra-optuna-sweeper does. A leading dot names a
            function of the app's own script: ".my-app.configure" in `python my-app.py`.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.utils import get_class, get_method, instantiate

from ._errors import SearchSpaceError, SweepConfigError

GRID_LIMIT = 100_000  # a grid this large is a typo (range(0, 1, 1e-6)), not a plan


def _is(cfg: Any, base_path: str) -> bool:
    if not cfg or not cfg.get("_target_"):
        return False
    try:
        return issubclass(get_class(cfg["_target_"]), get_class(base_path))
    except Exception:  # not a class: _plan's build check says why
        return False


def is_grid(sampler_cfg: Any) -> bool:
    return _is(sampler_cfg, "optuna.samplers.GridSampler")


def prunes(pruner_cfg: Any) -> bool:
    return bool(pruner_cfg) and not _is(pruner_cfg, "optuna.pruners.NopPruner")


def grid_space(label: str, distributions: dict[str, Any]) -> dict[str, list[Any]]:
    """Every value of each searched param, for GridSampler; refused when a param has no grid."""
    from optuna.distributions import CategoricalDistribution

    space = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            space[name] = list(dist.choices)
        elif getattr(dist, "step", None) and not getattr(dist, "log", False):
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            values = [dist.low + i * dist.step for i in range(count)]
            space[name] = [int(v) for v in values] if isinstance(dist.low, int) else [round(v, 12) for v in values]
        else:
            raise SearchSpaceError(
                f"cell {label}: the grid sampler needs a finite set of values for every searched "
                f"param, and {name} is continuous ({type(dist).__name__}); use choice(...) or "
                "range(start, stop, step=...) for it, or another sampler"
            )
    size = math.prod(len(v) for v in space.values())
    if size > GRID_LIMIT:
        raise SearchSpaceError(f"cell {label}: its grid has {size} points (more than {GRID_LIMIT}); coarsen a range")
    return space


def build_sampler(sampler_cfg: Any, label: str, distributions: dict[str, Any], **overrides: Any) -> Any:
    if not sampler_cfg:
        return None
    if is_grid(sampler_cfg):
        return capped_grid_sampler(grid_space(label, distributions), sampler_cfg.get("seed"))
    return instantiate(sampler_cfg, **overrides)


def capped_grid_sampler(search_space: dict[str, list[Any]], seed: int | None) -> Any:
    """Optuna's GridSampler, minus its Study.stop() once the grid is used up: that only works inside
    study.optimize(), and bench asks and tells. The plan caps each cell at its grid's size instead."""
    from optuna.samplers import GridSampler

    class CappedGridSampler(GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return CappedGridSampler(search_space, seed=seed)


def load_configure(path: str | None) -> Callable[[Any, Any], None] | None:
    """hydra.sweeper.custom_search_space as a callable, or a sentence saying why it is not one."""
    if not path:
        return None
    try:
        found = _from_app_script(path) if path.startswith(".") else get_method(path)
    except Exception as exc:
        raise SweepConfigError(
            f"hydra.sweeper.custom_search_space={path!r} cannot be imported: "
            f"{str(exc).splitlines()[0]}. Give module.function (a function configure(cfg, trial)), "
            "or .script_name.function for a function of the app's own script"
        ) from None
    if not callable(found):
        raise SweepConfigError(f"hydra.sweeper.custom_search_space={path!r} is not a function")
    return found


def _from_app_script(path: str) -> Any:
    """ ".custom-search-space-objective.configure": configure in the script the app was started as
    (upstream's example names its own file; a file name with dashes cannot be imported by name)."""
    module_name, _, attr = path.lstrip(".").rpartition(".")
    main = sys.modules.get("__main__")
    main_file = Path(getattr(main, "__file__", "") or "")
    if main is not None and main_file.stem == module_name:
        return getattr(main, attr)
    candidate = main_file.parent / f"{module_name}.py"
    if not candidate.is_file():
        raise ImportError(f"no {module_name}.py next to the app's script ({main_file or 'unknown'})")
    spec = importlib.util.spec_from_file_location(module_name.replace("-", "_"), candidate)
    if spec is None or spec.loader is None:
        raise ImportError(f"{candidate} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)
