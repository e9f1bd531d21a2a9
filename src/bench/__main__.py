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
    from bench.errors import USER_ERRORS
    from hydra_plugins.bench_sweeper.api import SweepInterrupted, mask_text

    # Hydra prints any job error with a traceback. bench's and its sweeper's own errors are
    # sentences meant for the user, so ask Hydra to let exceptions through and print those
    # plainly; everything else keeps its traceback. HYDRA_FULL_ERROR=1 from the user still shows
    # tracebacks for all errors.
    show_all_tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except (KeyboardInterrupt, SweepInterrupted) as exc:
        print(f"bench: interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})", file=sys.stderr)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 143)
    except USER_ERRORS as exc:
        if show_all_tracebacks:
            raise
        sys.exit(f"bench: error: {mask_text(str(exc))}")


if __name__ == "__main__":
    main()
