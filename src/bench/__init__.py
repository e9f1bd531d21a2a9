"""bench: benchmark geospatial foundation models with Hydra, Optuna and MLflow.

Importing bench must stay cheap (no torch): the CLI, config composition and dry runs use it.
"""

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${len:${task.model_bands}}` lets a model size its input layer from the task's bands.
if not OmegaConf.has_resolver("len"):
    OmegaConf.register_new_resolver("len", lambda seq: len(seq))
