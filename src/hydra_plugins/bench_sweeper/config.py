"""Structured config of the bench sweeper, registered as `hydra/sweeper=bench`.

The keys mirror hydra-optuna-sweeper's (sampler, direction, storage, study_name, n_trials, n_jobs,
max_failure_rate, params, and the hydra/sweeper/sampler and hydra/sweeper/pruner groups), so a
block written for that plugin works after `override hydra/sweeper: bench`.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConf:
    _target_: str = MISSING
    seed: Optional[int] = None


@dataclass
class TPESamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.TPESampler"
    consider_prior: Optional[bool] = None
    prior_weight: Optional[float] = None
    consider_magic_clip: Optional[bool] = None
    consider_endpoints: Optional[bool] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: Optional[bool] = None
    group: bool = False
    warn_independent_sampling: Optional[bool] = None
    # Trials still running are treated as having the worst value, so parallel slots don't all
    # sample the same point: required for dispatch without a batch barrier.
    constant_liar: bool = True


@dataclass
class RandomSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: Optional[dict[str, Any]] = None
    sigma0: Optional[float] = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Optional[Any] = None
    inc_popsize: int = 2
    use_separable_cma: bool = False


@dataclass
class QMCSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = True


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class BenchSweeperConf:
    _target_: str = "hydra_plugins.bench_sweeper.sweeper.BenchSweeper"
    # Sampler and pruner stay configs: every cell's study gets fresh instances.
    _recursive_: bool = False
    # _self_ first: the chosen sampler/pruner options must win over the fields below.
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "none"}])

    # Instantiated afresh for every cell's study.
    sampler: Any = MISSING
    pruner: Any = None
    # Used only for cells whose composed config has no value at `direction_key`.
    direction: Any = "minimize"
    # An Optuna storage URL (sqlite:///x.db, postgresql://...) or a journal file path. null: a
    # JournalStorage file in the sweep dir, which jobs on a shared filesystem can reach.
    storage: Optional[str] = None
    # Prefix of the per-cell study names: "<study_name>[<cell>]@<sweep id>".
    study_name: Optional[str] = None
    # Finished + pruned trials per cell (0: no tuning, straight to the repeats).
    n_trials: int = 20
    # Trials in flight at once, across all cells.
    n_jobs: int = 2
    # A cell stops once its failed trials exceed max_failure_rate * n_trials.
    max_failure_rate: float = 0.0
    # Search space in hydra-optuna-sweeper's grammar: {config.key: "interval(0, 1)", ...}.
    params: Optional[dict[str, Any]] = None

    # --- bench additions ---
    # Where each cell's composed config holds its own search space, metric and direction.
    search_space_key: Optional[str] = "search_space"
    # Where each cell's config lists search-space keys that cell does not search (as
    # terratorch-iterate's optimization_except): bench's classification tasks drop the decoder width.
    search_exclude_key: Optional[str] = None
    metric_key: Optional[str] = "task.metric"
    direction_key: Optional[str] = "task.direction"
    # Config node each trial gets (study, storage, trial id), so the job can report and prune;
    # jobs read this setting from their own hydra.sweeper config (trial.py).
    trial_key: str = "trial"
    # Dotted path of a callable(cell_config) run in the driver for every cell before launching.
    cell_check: Optional[str] = None
    # Dotted path of a callable(config) run on each cell's config with each edge of its search space
    # set in turn (every choice, both bounds), so a value no trial could use is refused up front
    # instead of failing the trials that draw it. It should be cheap: it runs many times per cell.
    value_check: Optional[str] = None
    # Seed repeats: once a cell's tuning is done, its best params are trained again once per seed
    # (in the same loop and slots, while other cells still tune); each repeat job is told it is
    # one (<trial_key>.phase=repeat) and evaluates the test split on its best checkpoint. 0: none.
    repeats: int = 0
    # The seeds; null: the first `repeats` of 1, 2, 3, ..., the same for every cell and model.
    seeds: Optional[list[int]] = None
    # The config key each repeat's seed is set at.
    seed_key: str = "seed"
    # Print the cells, their search spaces and the trial count; launch nothing.
    dry_run: bool = False
    # Seconds between polls of asynchronous launchers (Ray, submitit).
    poll_interval: float = 0.2
    # Before the first trial, check that some Ray node or SLURM partition node can hold one
    # trial's request (both would otherwise leave the trials pending forever).
    check_resources: bool = True
    # Cells declared in config, e.g. by an experiment preset's benchmark matrix: {key: [values]}
    # or {key: "a,b"}, as on the command line; a key swept on the command line replaces its entry.
    cells: dict[str, Any] = field(default_factory=dict)
    # results.csv / best.csv columns every row gets from its cell's config: {column: config key}.
    columns: dict[str, str] = field(default_factory=dict)
    # Keys whose change does not make a resumed cell another experiment (tracking, launcher
    # resources, paths); `hydra` and trial_key are always ignored, and so are absolute paths.
    ignore_on_resume: list[str] = field(default_factory=list)
    # A resumed cell whose experiment changed: "error" stops before launching, naming each
    # difference; "new_version" starts a new study for it and keeps the old one as history.
    on_change: str = "error"

_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="bench", node=BenchSweeperConf, provider="bench_sweeper")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "cmaes": CmaEsSamplerConf, "qmc": QMCSamplerConf}.items():
    _cs.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="bench_sweeper")
_pruners = {
    "none": NopPrunerConf,
    "median": MedianPrunerConf,
    "successive_halving": SuccessiveHalvingPrunerConf,
    "hyperband": HyperbandPrunerConf,
}
for _name, _node in _pruners.items():
    _cs.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="bench_sweeper")
