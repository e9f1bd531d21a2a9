"""Structured config of the bench sweeper, registered as `hydra/sweeper=bench`.

The keys mirror hydra-optuna-sweeper's (sampler, direction, storage, study_name, n_trials, n_jobs,
max_failure_rate, params, custom_search_space, and the hydra/sweeper/sampler and
hydra/sweeper/pruner groups), so a block written for that plugin works after
`override hydra/sweeper: bench`.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConf:
    _target_: str = MISSING
    seed: int | None = None


@dataclass
class TPESamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.TPESampler"
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    group: bool = False
    warn_independent_sampling: bool | None = None
    # Trials still running are treated as having the worst value, so parallel slots don't all
    # sample the same point: required for dispatch without a batch barrier.
    constant_liar: bool = True


@dataclass
class RandomSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Any | None = None
    inc_popsize: int = 2
    use_separable_cma: bool = False


@dataclass
class QMCSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = True


@dataclass
class GridSamplerConf(SamplerConf):
    # Every combination of each cell's choice()/range() values, once; the grid is built per cell
    # from its own search space, so no search_space key is needed here.
    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class NSGAIISamplerConf(SamplerConf):
    # The usual sampler for multi-objective cells (hydra.sweeper.direction: [minimize, maximize]).
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GPSamplerConf(SamplerConf):
    # Gaussian-process Bayesian optimisation; Optuna imports torch for it (in the driver).
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


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
class BudgetConf:
    # GPU-hours (or CPU-hours, for CPU-only runs) the whole sweep may spend, repeats included and
    # summed over every run of the sweep dir: resume with a larger figure to go on. null: no limit.
    gpu_hours: float | None = None
    cpu_hours: float | None = None
    # A cap per cell (tuning and repeats), in GPU-hours, or CPU-hours when only cpu_hours is set.
    per_cell: float | None = None
    # Convergence stop: a cell whose best value has not improved by more than min_delta (in the
    # metric's units) over its last `patience` finished trials stops tuning. null: never.
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class AccountingConf:
    # What a trial run inside the driver (Hydra's basic launcher) holds; null: every GPU visible to
    # the driver (CUDA_VISIBLE_DEVICES, else nvidia-smi) and every CPU it may use.
    local_gpus: float | None = None
    local_cpus: float | None = None
    # Ray resources counted as GPUs: GPU (num_gpus) and any custom resource standing in for them.
    gpu_resources: list[str] = field(default_factory=lambda: ["GPU"])


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
    # Used only for cells whose composed config has no value at `direction_key`. A list, one per
    # objective, makes a multi-objective study whose jobs return one value per objective.
    direction: Any = "minimize"
    # An Optuna storage URL (sqlite:///x.db, postgresql://...) or a journal file path. null: a
    # JournalStorage file in the sweep dir, which jobs on a shared filesystem can reach.
    storage: str | None = None
    # Prefix of the per-cell study names: "<study_name>[<cell>]@<sweep id>".
    study_name: str | None = None
    # Finished + pruned trials per cell (0: no tuning, straight to the repeats).
    n_trials: int = 20
    # Whether a pruned trial counts towards n_trials (as in hydra-optuna-sweeper). false: n_trials
    # counts completed trials only, so every cell ends with the same number of fully trained
    # configurations however much its pruner cut (benchmark protocols set this).
    count_pruned: bool = True
    # Trials in flight at once, across all cells.
    n_jobs: int = 2
    # A cell stops once its failed trials exceed max_failure_rate * n_trials.
    max_failure_rate: float = 0.0
    # Search space in hydra-optuna-sweeper's grammar: {config.key: "interval(0, 1)", ...}.
    params: dict[str, Any] | None = None
    # Dotted path of configure(cfg, trial), called with the cell's config after the params above are
    # sampled, to suggest more (conditional params, new keys named +key); ".script.function" is a
    # function of the app's own script. Its params reach the job and results.csv like any other.
    custom_search_space: str | None = None

    # --- bench additions ---
    # Where each cell's composed config holds its own search space, metric and direction.
    search_space_key: str | None = "search_space"
    # Where each cell's config lists search-space keys that cell does not search (as
    # terratorch-iterate's optimization_except): bench's classification tasks drop the decoder width.
    search_exclude_key: str | None = None
    metric_key: str | None = "task.metric"
    # Where a cell's config may give its own trial count, for a protocol that tunes some cells less
    # (GEO-Bench-2 gives its detection datasets 10 trials, the others 16). Absent or null: n_trials.
    n_trials_key: str | None = None
    direction_key: str | None = "task.direction"
    # Config node each trial gets (study, storage, trial id), so the job can report and prune;
    # jobs read this setting from their own hydra.sweeper config (trial.py).
    trial_key: str = "trial"
    # Dotted path of a callable(cell_config) run in the driver for every cell before launching.
    cell_check: str | None = None
    # Dotted path of a callable(config) run on each cell's config with each edge of its search space
    # set in turn (every choice, both bounds), so a value no trial could use is refused up front
    # instead of failing the trials that draw it. It should be cheap: it runs many times per cell.
    value_check: str | None = None
    # Seed repeats: once a cell's tuning is done, its best params are trained again once per seed
    # (in the same loop and slots, while other cells still tune); each repeat job is told it is
    # one (<trial_key>.phase=repeat) and evaluates the test split on its best checkpoint. 0: none.
    repeats: int = 0
    # The seeds; null: the first `repeats` of 1, 2, 3, ..., the same for every cell and model.
    seeds: list[int] | None = None
    # The config key each repeat's seed is set at.
    seed_key: str = "seed"
    # k-fold tuning: each tuning trial's job is told `<trial_key>.folds=K` and should train K models
    # on K fixed splits of its training set, each validated on its held-out fold, report pruning
    # values as the running mean over folds (trial.FoldReporter), return the mean and keep the
    # per-fold values (api.fold_outputs: fold_0.. fold_{K-1}, fold_std columns in results.csv).
    # Repeats never get it. null: one split. A trial then costs about K trainings.
    folds: int | None = None
    # Print the cells, their search spaces and the trial count; launch nothing.
    dry_run: bool = False
    # Seconds between polls of asynchronous launchers (Ray, submitit).
    poll_interval: float = 0.2
    # When the output is not a terminal (a log file, a SLURM job's output): seconds between the
    # plain-text progress tables (a terminal gets rich's live view instead).
    progress_every_s: float = 30.0
    # Before the first trial, check that some Ray node or SLURM partition node can hold one
    # trial's request (both would otherwise leave the trials pending forever).
    check_resources: bool = True
    # Cells declared in config, e.g. by an experiment preset's benchmark matrix: {key: [values]}
    # or {key: "a,b"}, as on the command line; a key swept on the command line replaces its entry.
    cells: dict[str, Any] = field(default_factory=dict)
    # results.csv / best.csv columns every row gets from its cell's config: {column: config key}.
    columns: dict[str, str] = field(default_factory=dict)
    # Config groups (or keys) whose chosen option always names a cell, swept or not: with [task,
    # model], `-m task=a model=x` is the cell "task=a,model=x", not "default", and `-m task=a,b
    # model=x` gives "task=a,model=x" and "task=b,model=x". The value of an unswept one is the
    # cell's chosen option (hydra.runtime.choices), else its config value. They come first in a
    # label, in this order, then the other swept keys. Empty: a label names the swept keys only.
    # A sweep dir keeps the label keys it was created with (sweep.json), so a resume finds its studies.
    label_keys: list[str] = field(default_factory=list)
    # A symlink pointed at the newest sweep dir as each sweep starts (or resumes), e.g.
    # multirun_outputs/latest; only for a sweep dir inside the link's own folder, and never replacing
    # anything there that is not a symlink. null: none.
    latest_link: str | None = None
    # Names of environment variables whose value in the driver's environment every trial sees. A
    # SLURM job and a local trial inherit the driver's environment; a Ray worker has the environment
    # of the `ray start` that started its node, so these reach it through the task's runtime_env
    # (env_vars). Unset ones are left alone. A secret's name is refused: Ray keeps runtime_env in
    # clear (its dashboard shows it), so give secrets to the nodes' own environment instead.
    forward_env: list[str] = field(default_factory=list)
    # Keys whose change does not make a resumed cell another experiment (tracking, launcher
    # resources, paths); `hydra` and trial_key are always ignored, and so are absolute paths.
    ignore_on_resume: list[str] = field(default_factory=list)
    # A resumed cell whose experiment changed: "error" stops before launching, naming each
    # difference; "new_version" starts a new study for it and keeps the old one as history.
    on_change: str = "error"
    # GPU-hour / CPU-hour budgets and the convergence stop (_budget.py).
    budget: BudgetConf = field(default_factory=BudgetConf)
    # How each trial's GPU-hours and CPU-hours are counted (_cost.py).
    accounting: AccountingConf = field(default_factory=AccountingConf)
    # Warm starts: each cell's new study first tries the best `warm_start_top_k` configurations of
    # "siblings" (this sweep's cells that differ from it only in `sibling_key`; all other cells when
    # null), or of the matching cells of an earlier sweep (its directory). Validation values only.
    warm_start: str | None = None
    warm_start_top_k: int = 3
    sibling_key: str | None = None


_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="bench", node=BenchSweeperConf, provider="bench_sweeper")
_samplers = {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "qmc": QMCSamplerConf,
    "grid": GridSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "gp": GPSamplerConf,
}
for _name, _node in _samplers.items():
    _cs.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="bench_sweeper")
_pruners = {
    "none": NopPrunerConf,
    "median": MedianPrunerConf,
    "successive_halving": SuccessiveHalvingPrunerConf,
    "hyperband": HyperbandPrunerConf,
}
for _name, _node in _pruners.items():
    _cs.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="bench_sweeper")
