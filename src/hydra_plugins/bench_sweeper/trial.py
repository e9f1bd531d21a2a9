"""Job side: the Optuna trial a sweep job belongs to, so it can report and be pruned.

The sweeper puts `trial.{study,storage,id,number,cell}` into every job's config (the key is
hydra.sweeper.trial_key); the job process, wherever it runs, reopens the same storage. The pruner
comes from the job's own hydra.sweeper config, so driver and job agree on it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def trial_from_config(cfg: DictConfig, trial_key: str = "trial") -> Any:
    """The optuna.trial.Trial this job runs, or None outside a bench sweep."""
    node = OmegaConf.select(cfg, trial_key, default=None)
    if not node or node.get("id") is None:
        return None
    import optuna
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from ._studies import open_storage

    pruner = None
    if HydraConfig.initialized():
        pruner_cfg = OmegaConf.select(HydraConfig.get(), "sweeper.pruner", default=None)
        pruner = instantiate(pruner_cfg) if pruner_cfg else None
    study = optuna.load_study(study_name=node.study, storage=open_storage(node.storage), pruner=pruner)
    return optuna.trial.Trial(study, int(node.id))


def report_and_maybe_prune(trial: Any, value: float, step: int) -> None:
    """Report an intermediate value; raise optuna.TrialPruned when the pruner says stop."""
    import optuna

    trial.report(value, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step} with value {value:.6g}")
