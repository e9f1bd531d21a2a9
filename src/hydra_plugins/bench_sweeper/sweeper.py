"""The Hydra Sweeper plugin shim; the work is in _impl (imported lazily, as Hydra plugins do,
because Hydra imports every plugin module while scanning, even for --help)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class BenchSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from ._impl import BenchSweeperImpl

        self.sweeper = BenchSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
