"""A Hydra callback that applies the sweeper's masking policy (_masking.py) to what Hydra writes.

Hydra saves every job's config, its own config and the overrides in clear under <job dir>/.hydra.
With `hydra.output_subdir: null` Hydra saves nothing, and this callback writes the same three files
there, masked. It also masks the console and the logs of every process it runs in: the driver, and
each job wherever it runs.

    hydra:
      output_subdir: null
      callbacks:
        mask_secrets:
          _target_: hydra_plugins.bench_sweeper.masking.MaskSecrets
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from . import _masking
from ._files import atomic_write


class MaskSecrets(Callback):
    def __init__(self, output_subdir: str | None = ".hydra") -> None:
        self.output_subdir = output_subdir

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _masking.install(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _masking.install(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _masking.install(config)
        if config.hydra.output_subdir is not None or not self.output_subdir:
            return  # Hydra saved the files itself (in clear), or nobody wants them
        out = Path(config.hydra.runtime.output_dir) / self.output_subdir
        out.mkdir(parents=True, exist_ok=True)
        task = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
        hydra = OmegaConf.create({"hydra": _masking.mask_config(config.hydra, resolve=False)})
        with open_dict(hydra):
            hydra.hydra.output_subdir = self.output_subdir
        # Not resolved: an override such as +hf=${oc.env:X} is text, and X need not be set here.
        overrides = [_masking.mask_override(str(line)) for line in config.hydra.overrides.task]
        # Unresolved, as Hydra saves them: an ${oc.env:...} stays a reference, not its value.
        _save(out / "config.yaml", OmegaConf.create(_masking.mask_config(task, resolve=False)))
        _save(out / "hydra.yaml", hydra)
        _save(out / "overrides.yaml", OmegaConf.create(overrides))


def _save(path: Path, node: Any) -> None:
    with atomic_write(path) as f:
        OmegaConf.save(node, f)
