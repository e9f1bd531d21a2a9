"""A tiny Hydra app (no torch) for testing the bench sweeper as any Hydra user would use it.

objective = model.scale * (x - task.offset)^2 + y, optionally sleeping, failing or reporting
intermediate values so a pruner can act.
"""

import hashlib
import json
import os
import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.bench_sweeper._errors import CellError
from hydra_plugins.bench_sweeper.trial import job_trial, report_and_maybe_prune, report_progress, trial_from_config


class StubCellError(CellError):
    """An error every trial of the cell would repeat, as bench's ConfigError is."""


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    started = time.time()
    out = HydraConfig.get().runtime.output_dir
    node = _ray_node_id()
    # A stand-in for a training checkpoint: a requeued or retried job continues after the last
    # step it recorded, as bench's train() continues from last.ckpt.
    progress = os.path.join(out, "progress.json")
    first_step = json.load(open(progress))["step"] + 1 if os.path.exists(progress) else 0
    # One line per attempt: a retried or requeued job appends a second one.
    with open(os.path.join(out, "attempts.jsonl"), "a") as f:
        f.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "start": started,
                    "node": node,
                    "resumed_from": first_step,
                    "model": cfg.model.name,
                    "ray_resources": _ray_resources(),
                    "slurm_job": os.environ.get("SLURM_JOB_ID"),
                }
            )
            + "\n"
        )
    if cfg.received:
        with open(os.path.join(out, "received.json"), "w") as f:
            json.dump(
                {key: hashlib.sha256(str(OmegaConf.select(cfg, key)).encode()).hexdigest() for key in cfg.received}, f
            )
    value = cfg.model.scale * (cfg.x - cfg.task.offset) ** 2 + cfg.y
    try:
        if cfg.fail_for_the_cell:
            raise StubCellError(f"task {cfg.task.name} cannot work with this config")
        if cfg.fail or cfg.task.name in cfg.fail_tasks or cfg.x > cfg.fail_above:
            raise RuntimeError(
                f"stub failure in task {cfg.task.name}" + (f" ({cfg.leak_in_error})" if cfg.leak_in_error else "")
            )
        number = cfg.trial.number if cfg.trial is not None else None
        phase = cfg.trial.get("phase") if cfg.trial is not None else None
        held = phase == cfg.hold_phase and number in cfg.hold_trials
        if held:  # tests wait for this file to know the held trial itself is the one running
            open(os.path.join(out, "held"), "w").close()
        try:
            while held and not os.path.exists(cfg.release):
                time.sleep(0.05)
        except KeyboardInterrupt:
            if cfg.exit_on_interrupt:
                sys.exit(1)
            raise
        slow = cfg.x > cfg.slow_above or number in cfg.slow_trials or cfg.task.name in cfg.slow_tasks
        time.sleep(cfg.sleep * (cfg.slow_factor if slow else 1.0))
        trial = trial_from_config(cfg)
        # Where it is, for the driver's live view: any app may report it, one objective or several.
        job = trial if trial is not None or not cfg.steps else job_trial(cfg)
        for step in range(first_step, cfg.steps):
            # Converges to `value` from above: worse trials are visibly worse early on.
            if cfg.mlflow.enabled:
                import mlflow

                mlflow.log_metric("score", value + (cfg.steps - step), step=step)
            report_progress(job, step + 1, cfg.steps, value + (cfg.steps - step))
            report_and_maybe_prune(trial, value + (cfg.steps - step), step)
            time.sleep(cfg.step_sleep)
            _write_json(progress, {"step": step})
        if phase == "repeat":
            # A seed repeat: "tested" on a split the tuning trials never saw.
            if cfg.fail_tests:
                raise StubCellError(f"task {cfg.task.name}: the test split cannot be read")
            return {
                "value": value,
                "test_value": value + cfg.seed / 100,
                "test/score": value + cfg.seed / 100,
                "checkpoint": os.path.join(out, "best.ckpt"),
            }
        if cfg.second_objective:  # a multi-objective cell: the value and |x|, both minimised
            return value, abs(cfg.x)
        if cfg.outputs:
            return {"value": value, **cfg.outputs}
        return value
    finally:
        _write_json(
            os.path.join(out, "timing.json"), {"start": started, "end": time.time(), "pid": os.getpid(), "node": node}
        )


def _write_json(path: str, data: dict) -> None:
    """Atomically: tests poll these files while the trial runs."""
    with open(f"{path}.tmp", "w") as f:
        json.dump(data, f)
    os.replace(f"{path}.tmp", path)


def _ray_node_id():
    import sys

    if "ray" not in sys.modules:
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _ray_resources():
    """What Ray granted this task (CPU, GPU, custom resources), or None outside Ray."""
    if _ray_node_id() is None:
        return None
    import ray

    return ray.get_runtime_context().get_assigned_resources()


if __name__ == "__main__":
    main()
