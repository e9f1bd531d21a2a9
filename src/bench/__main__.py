"""Command-line entry point: `python -m bench [overrides]` or `python -m bench -m ...`."""

import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

import bench  # noqa: F401  (registers OmegaConf resolvers before composition)
from bench.paths import CONFIG_PATH


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def app(cfg: DictConfig) -> float | list[float] | dict[str, Any]:
    """One job: its MLflow run opened (the one the sweep's driver made for it, or a standalone
    run), train() given it explicitly, the run closed with the job's outcome."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # Imported here so --help, --cfg and composition never load torch.
    from bench import ddp
    from bench.tracking.trial_logger import TrialLogger
    from bench.train import train

    if ddp.adopt_srun_rank(cfg):  # a SLURM task other than the first of a multi-process trial
        ddp.train_as_child(cfg)
        return float("nan")  # never read: the sweeper takes the first task's result
    hydra_cfg = HydraConfig.get()
    tracking = TrialLogger.for_job(
        cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir, hydra_cfg.mode == RunMode.MULTIRUN
    )
    if tracking is None:
        return train(cfg)
    return tracking.around(lambda: train(cfg, tracking))


def main() -> None:
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from bench.cli import help_text, usage_error, wants_help
    from bench.errors import USER_ERRORS
    from hydra_plugins.bench_sweeper.api import SweepInterrupted, mask_text

    if sys.argv[1:2] == ["cache"]:  # `bench cache ls|rm`: not a Hydra override (those hold `=`)
        from bench.cache import main as cache_main

        sys.exit(cache_main(sys.argv[2:], prog="bench cache"))
    if wants_help(sys.argv[1:]):  # bench's own, in milliseconds (bench/cli.py); --hydra-help is Hydra's
        try:
            print(help_text(sys.argv[1:]), flush=True)
        except BrokenPipeError:  # `bench --help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    # Hydra prints any job error with a traceback. bench's and its sweeper's own errors are
    # sentences meant for the user, and so is a command line Hydra cannot compose (a typo in a
    # group's option or a key): ask Hydra to let exceptions through and print those as one line;
    # everything else keeps its traceback. BENCH_DEBUG=1, or HYDRA_FULL_ERROR=1 set by the user,
    # shows the traceback of every error.
    debug = os.environ.get("BENCH_DEBUG") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except (KeyboardInterrupt, SweepInterrupted) as exc:
        print(f"bench: interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})", file=sys.stderr)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 143)
    except USER_ERRORS as exc:
        if debug:
            raise
        sys.exit(f"bench: error: {mask_text(str(exc))}")
    except (ConfigCompositionException, OverrideParseException) as exc:
        if debug:
            raise
        # A usage error, as argparse's: exit code 2. Nothing was created (Hydra composes first).
        print(f"bench: error: {mask_text(usage_error(exc))}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
