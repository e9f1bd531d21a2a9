"""Timing stub for the compute benchmarks: a cell is a landscape with one peak, score in [0, 1].

    score = exp(-difficulty * (x - peak)^2)

An easy cell (low difficulty) is nearly flat, so any configuration is close to its best and tuning
converges in a few trials; a hard one has a narrow peak that needs many trials to find. The peak
sits at `task.peak` plus a small per-cell shift (`task.shift`), so cells' optima are correlated, as
the same model's good hyperparameters are across tasks. No torch, no training: each trial sleeps
`sleep` seconds to stand for one.
"""

import math
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    time.sleep(cfg.sleep)
    return math.exp(-cfg.task.difficulty * (cfg.x - (cfg.task.peak + cfg.task.shift)) ** 2)


if __name__ == "__main__":
    main()
