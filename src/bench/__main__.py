"""Command-line entry point: `python -m bench [overrides]` or `python -m bench -m ...`."""

import hydra
from omegaconf import DictConfig

import bench  # noqa: F401  (registers OmegaConf resolvers before composition)
from bench.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here so --help, --cfg and composition never load torch.
    from bench.train import train

    return train(cfg)


if __name__ == "__main__":
    main()
