"""Timing stub for the dispatch benchmark: a trial sleeps for a lognormal duration chosen from
its sampled parameter, and records when it really started and ended. No torch, no training."""

import json
import math
import os
import time
from statistics import NormalDist

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | dict:
    started = time.time()
    # u ~ U(0,1) from the sampler -> z ~ N(0,1) -> duration ~ median * lognormal(sigma). Cells
    # share the sampler seed, so each cell shifts u (golden ratio) to get durations of its own.
    u = (cfg.u + 0.618034 * int(str(cfg.cell).lstrip("c"))) % 1.0
    phase = cfg.trial.get("phase") if cfg.trial is not None else None
    if phase == "repeat":
        # A seed repeat trains the best config again: a duration of its own, drawn from its seed.
        u = (u + 0.381966 * cfg.seed) % 1.0
    z = NormalDist().inv_cdf(min(max(u, 1e-6), 1 - 1e-6))
    duration = cfg.median_s * math.exp(cfg.sigma * z)
    time.sleep(duration)
    ended = time.time()
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "timing.json"), "w") as f:
        json.dump({"start": started, "end": ended, "cell": cfg.cell, "phase": phase}, f)
    return {"value": duration, "test_value": duration} if phase == "repeat" else duration


if __name__ == "__main__":
    main()
