"""Command-line entry point: `python -m bench [overrides]` or `python -m bench -m ...`."""

import os
import sys

import hydra
from omegaconf import DictConfig

import bench  # noqa: F401  (registers OmegaConf resolvers before composition)
from bench.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def app(cfg: DictConfig) -> float:
    # Imported here so --help, --cfg and composition never load torch.
    from bench.train import train

    return train(cfg)


def main() -> None:
    # Hydra prints any job error with a traceback. bench's and its sweeper's own errors are
    # sentences meant for the user, so ask Hydra to let exceptions through and print those plainly; everything else keeps
    # its traceback. HYDRA_FULL_ERROR=1 from the user still shows tracebacks for all errors.
    show_all_tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except Exception as exc:
        # Marked by bench.errors.BenchError and the sweeper's SweepError. Matched by attribute,
        # not class: Hydra re-executes plugin modules while scanning, which recreates the
        # sweeper's exception classes after this module imported them.
        if show_all_tracebacks or not getattr(exc, "user_facing", False):
            raise
        sys.exit(f"bench: error: {exc}")


if __name__ == "__main__":
    main()
