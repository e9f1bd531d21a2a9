"""Each trial's composed config, without composing the cell again for every trial.

Hydra's load_sweep_config composes a job's config from nothing: the defaults tree, every YAML
file, the merges. That was 130 ms of the 240 ms between one in-process trial and the next
(benchmarks/dispatch_utilization.py). But the trials of one cell differ only in their sampled
values, and Hydra applies value overrides last, after the defaults are composed, to a config they
cannot change the shape of. So the config is composed once per cell "shape" (the overrides that
choose config groups or touch Hydra's node, in order), with no value overrides, and each trial gets
a copy with its own values applied by Hydra's own code (_private_apis.apply_value_overrides), its
override list and override_dirname set as Hydra sets them.

Checked, not assumed: a shape's first trial is composed both ways and the copy is used for its
later trials only when the two configs are identical; otherwise the shape always gets a full
composition. Overrides that choose a group or touch hydra.* go to the full path too.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf, open_dict

from ._private_apis import apply_value_overrides, overrides_dirname

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

_SHAPES = 64  # cells whose base config is kept (a sweep's cells take turns: LRU)


class JobConfigs:
    def __init__(self, loader: Any, master: DictConfig) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.master = loader, master
        self.parser = OverridesParser.create()
        self.bases: OrderedDict[tuple[str, ...], bytes | None] = OrderedDict()  # None: full path
        self.choices: set[str] = {str(k) for k in master.hydra.runtime.choices}  # groups, not values
        self.composed = self.copied = 0  # how each trial's config was made (tests, benchmarks)

    def get(self, overrides: list[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(overrides)
        values = [o for o in parsed if self._is_value(o)]
        shape = tuple(o.input_line or "" for o in parsed if o not in values)
        if not values or any(o.is_sweep_override() for o in parsed):
            return self._compose(overrides)
        if shape in self.bases:
            self.bases.move_to_end(shape)
            base = self.bases[shape]
            if base is None:
                return self._compose(overrides)
            self.copied += 1
            return self._apply(pickle.loads(base), parsed, values)
        composed = self._compose(overrides)
        try:
            base_cfg = self._compose(list(shape))
            pickled: bytes | None = pickle.dumps(base_cfg)
            same = _plain(self._apply(pickle.loads(pickled), parsed, values)) == _plain(composed)  # type: ignore[arg-type]
        except Exception:  # the shape alone does not compose, or the values do not apply to it
            pickled, same = None, False
        self.bases[shape] = pickled if same else None
        while len(self.bases) > _SHAPES:
            self.bases.popitem(last=False)
        return composed

    def _is_value(self, override: Override) -> bool:
        """An override Hydra applies to the composed config, not to its defaults tree."""
        key = override.key_or_group
        if override.is_hydra_override() or override.package is not None or key in self.choices:
            return False
        if isinstance(override.value(), dict):
            return True  # Hydra's own rule: a dict value is a config override even on a group
        return not self.loader.repository.group_exists(key)

    def _compose(self, overrides: list[str]) -> DictConfig:
        self.composed += 1
        composed: DictConfig = self.loader.load_sweep_config(self.master, list(overrides))
        return composed

    def _apply(self, cfg: DictConfig, parsed: list[Override], values: list[Override]) -> DictConfig:
        """What Hydra's _load_configuration_impl does with the value overrides, on a copy, and
        load_sweep_config then (the driver's resolved values: timestamps and the like)."""
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        apply_value_overrides(values, cfg)
        app = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in app]
            dirname = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = overrides_dirname(
                app, dirname.kv_sep, dirname.item_sep, list(dirname.exclude_keys)
            )
        return cfg


def _plain(cfg: DictConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=False), OmegaConf.is_struct(cfg), OmegaConf.is_readonly(cfg)
