"""What an app may use of the bench sweeper: its one public module.

Everything an app (bench, or any other Hydra app) needs is named here; the underscore modules
behind it may change without notice. (Their underscore also keeps Hydra's plugin scan, which
imports and re-executes every public module of a plugin package, off them: this module only
re-binds names, so classes stay the same objects and `except`/`isinstance` keep working.)
Nothing here imports optuna, ray or submitit: Hydra scans this module on every start, `--help`
included.

  job side     the trial a job belongs to: its phase and number, report-and-prune, its progress,
               k-fold tuning (its fold count, the running-mean reporter, the per-fold outputs)
  errors       the sweeper's error types, and CellError for an app's "this cell cannot run"
  masking      the secret-masking policy, for what an app writes itself
  observers    SweepObserver, the hooks a Hydra callback gets over a sweep, and trial attributes
  results      the sweep dir's files, objective directions, whether a driver runs a sweep dir
  outcome      what a finished Hydra job means: judge() -> Outcome (state, value, outputs, error)
"""

from __future__ import annotations

from ._cells import flatten
from ._cost import visible_gpu_count
from ._database import SQLITE_LIMIT, is_database_url, multi_node_reason, reach
from ._errors import CellError, SweepError, SweepInterrupted
from ._masking import mask_config, mask_data, mask_override, mask_text, remember
from ._objectives import DIRECTIONS, MAXIMIZE, MINIMIZE
from ._outcome import Outcome, judge
from ._private_apis import job_outcome
from ._results import BEST_CSV, REPEATS_CSV, RESULTS_CSV
from ._sweepdir import running_driver
from .observer import COST_ATTRS, TRACKER_RUN_ID_ATTR, SweepObserver
from .trial import (
    FOLD_STD,
    PHASE_REPEAT,
    PHASE_TUNE,
    PROGRESS_ATTR,
    FoldReporter,
    fold_outputs,
    job_trial,
    report_and_maybe_prune,
    report_progress,
    trial_folds,
    trial_from_config,
    trial_number,
    trial_phase,
)

__all__ = [
    "BEST_CSV",
    "COST_ATTRS",
    "CellError",
    "DIRECTIONS",
    "FOLD_STD",
    "FoldReporter",
    "MAXIMIZE",
    "MINIMIZE",
    "Outcome",
    "PHASE_REPEAT",
    "PHASE_TUNE",
    "PROGRESS_ATTR",
    "REPEATS_CSV",
    "RESULTS_CSV",
    "SweepError",
    "SweepInterrupted",
    "SweepObserver",
    "TRACKER_RUN_ID_ATTR",
    "flatten",
    "fold_outputs",
    "job_trial",
    "judge",
    "job_outcome",
    "SQLITE_LIMIT",
    "is_database_url",
    "multi_node_reason",
    "reach",
    "mask_config",
    "mask_data",
    "mask_override",
    "mask_text",
    "remember",
    "report_and_maybe_prune",
    "report_progress",
    "running_driver",
    "trial_folds",
    "trial_from_config",
    "trial_number",
    "trial_phase",
    "visible_gpu_count",
]
