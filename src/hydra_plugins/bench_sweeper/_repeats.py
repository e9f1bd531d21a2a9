"""Seed repeats: each cell's best configuration trained again with fixed seeds, in the same loop.

A cell's repeats live in a study of their own, "<tuning study>/repeats", created the moment its
tuning is done: one enqueued trial per seed, each with the best trial's params fixed. The study's
user attributes record, once, which tuning trial was best, its params and the seed list; a resume
reads them back and never re-picks them. Repeat trials then resume like tuning trials: finished
ones are kept, interrupted ones were re-queued with their seed (_studies.mark_interrupted).

The job learns it is a repeat from `<trial_key>.phase` and gets its seed at `seed_key`; what it
returns besides its objective (a mapping: {"value": ..., "test_value": ..., ...}) is kept as the
trial's outputs, which repeats.csv lists and the cell's summary aggregates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._errors import ResumeMismatchError, SweepConfigError
from ._studies import (
    ATTR_OUTPUTS,
    ATTR_SEED,
    PHASE_REPEAT,
    STUDY_CELL,
    STUDY_PHASE,
    STUDY_SWEEP,
    STUDY_VERSION,
    StudyRecord,
    name_metrics,
)

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from ._cells import Cell

log = logging.getLogger(__name__)

# Used when hydra.sweeper.seeds is not given: the same seeds for every cell, so every model of a
# benchmark is repeated with the same seeds.
DEFAULT_SEEDS = tuple(range(1, 101))
REPEAT_BEST_TRIAL, REPEAT_PARAMS, REPEAT_DISTRIBUTIONS = "best_trial", "best_params", "distributions"
REPEAT_SEEDS, REPEAT_TUNED_BY, REPEAT_N_TRIALS = "seeds", "tuned_by", "n_trials"
TEST_VALUE = "test_value"  # the output a repeat returns for the cell's metric on the test split


def seed_list(repeats: int, seeds: Any) -> list[int]:
    """The seeds each cell is repeated with; checked before anything is created."""
    if repeats < 0:
        raise SweepConfigError(f"hydra.sweeper.repeats={repeats} must be 0 (no repeats) or a number of seeds")
    if seeds is None:
        if repeats > len(DEFAULT_SEEDS):
            raise SweepConfigError(
                f"hydra.sweeper.repeats={repeats}: give hydra.sweeper.seeds for more than {len(DEFAULT_SEEDS)} seeds"
            )
        return list(DEFAULT_SEEDS[:repeats])
    chosen: list[int] = list(seeds)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in chosen) or len(set(chosen)) != len(chosen):
        raise SweepConfigError(f"hydra.sweeper.seeds={chosen} must be distinct whole numbers")
    if repeats > len(chosen):
        raise SweepConfigError(
            f"hydra.sweeper.repeats={repeats} needs as many seeds, but hydra.sweeper.seeds "
            f"lists {len(chosen)}; list more seeds or lower repeats"
        )
    return chosen[:repeats] if repeats else chosen


def repeats_name(tuning_study_name: str) -> str:
    return f"{tuning_study_name}/repeats"


def existing_repeats(storage: Any, tuning_study_name: str) -> optuna.Study | None:
    import optuna

    try:
        return optuna.load_study(study_name=repeats_name(tuning_study_name), storage=storage)
    except KeyError:
        return None


def open_repeats(cell: Cell, tuning: optuna.Study, seeds: list[int], storage: Any) -> optuna.Study | str:
    """The cell's repeats study, with one enqueued trial per seed; or, when there is nothing to
    repeat, the reason why. Created with the tuning study's best trial, or with the cell's
    composed config when it was not tuned (no search space, or n_trials=0)."""
    import optuna
    from optuna.distributions import distribution_to_json
    from optuna.trial import TrialState

    if len(tuning.directions) > 1:
        return "a multi-objective cell has a Pareto front, not one best configuration to repeat"
    study = existing_repeats(storage, tuning.study_name)
    if study is not None:
        _extend_seeds(cell, study, seeds)
        name_metrics(study, cell.metric)
        return study
    finished = tuning.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if finished and not complete:
        return "no tuning trial completed (all were pruned), so there is no best configuration to repeat"
    best = tuning.best_trial if complete else None
    study = optuna.create_study(
        study_name=repeats_name(tuning.study_name),
        storage=storage,
        direction=tuning.direction,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    tuning_attrs = tuning.user_attrs
    attrs = {
        STUDY_SWEEP: tuning_attrs.get(STUDY_SWEEP),
        STUDY_CELL: cell.label,
        STUDY_PHASE: PHASE_REPEAT,
        STUDY_VERSION: tuning_attrs.get(STUDY_VERSION, 1),
        REPEAT_TUNED_BY: tuning.study_name,
        REPEAT_BEST_TRIAL: best.number if best else None,
        REPEAT_PARAMS: dict(best.params) if best else {},
        REPEAT_DISTRIBUTIONS: {k: distribution_to_json(d) for k, d in (best.distributions if best else {}).items()},
        REPEAT_SEEDS: list(seeds),
        REPEAT_N_TRIALS: len(finished),
        **{k: tuning_attrs.get(k) for k in ("coordinates", "columns", "metric", "direction")},
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    name_metrics(study, cell.metric)
    for seed in seeds:
        study.enqueue_trial(attrs[REPEAT_PARAMS], user_attrs={ATTR_SEED: seed}, skip_if_exists=False)
    return study


def _extend_seeds(cell: Cell, study: optuna.Study, seeds: list[int]) -> None:
    """A resume keeps the seeds already chosen; more seeds (a longer list that starts with them)
    are added, anything else is another experiment."""
    stored = list(study.user_attrs.get(REPEAT_SEEDS, []))
    if seeds[: len(stored)] != stored[: len(seeds)]:
        raise ResumeMismatchError(
            f"cell {cell.label}: its repeats were started with seeds {stored}, and this command asks for {seeds}. "
            "Resume with the same seeds (or a list that extends them), or use a new hydra.sweep.dir."
        )
    if len(seeds) < len(stored):
        log.warning(
            "[%s] its repeats keep the %d seeds %s they started with (this command asks for %d): seeds once "
            "chosen are never dropped, so the cells of a sweep keep the same seeds; use a new hydra.sweep.dir "
            "for fewer",
            cell.label,
            len(stored),
            stored,
            len(seeds),
        )
    added = seeds[len(stored) :]
    for seed in added:
        study.enqueue_trial(study.user_attrs.get(REPEAT_PARAMS, {}), user_attrs={ATTR_SEED: seed}, skip_if_exists=False)
    if added:
        study.set_user_attr(REPEAT_SEEDS, stored + added)


def fixed_distributions(study: optuna.Study) -> dict[str, Any]:
    """The distributions of the repeated params, so that asking for a trial yields exactly them."""
    from optuna.distributions import json_to_distribution

    return {k: json_to_distribution(v) for k, v in study.user_attrs.get(REPEAT_DISTRIBUTIONS, {}).items()}


def summary(study: optuna.Study) -> dict[str, float]:
    """Mean, sample std and interquartile mean (25 % trimmed) of the finished repeats' test values."""
    import numpy as np
    from optuna.trial import TrialState

    returned = [
        t.user_attrs.get(ATTR_OUTPUTS, {}).get(TEST_VALUE)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    values = np.array([v for v in returned if isinstance(v, (int, float))], dtype=float)
    if not len(values):
        return {"n_repeats": 0}
    return {
        "n_repeats": len(values),
        "test_mean": float(values.mean()),
        "test_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "test_iqm": _interquartile_mean(values),
    }


def opener(seeds: list[int], storage: Any) -> Any:
    """For the dispatch loop: a cell's finished tuning run -> its repeats run (or why none)."""
    from ._loop_state import CellRun

    def open_run(tuning_run: CellRun) -> CellRun | str:
        study = open_repeats(tuning_run.cell, tuning_run.study, seeds, storage)
        if isinstance(study, str):
            return study
        return CellRun(
            tuning_run.cell,
            study,
            target=len(study.user_attrs[REPEAT_SEEDS]),
            phase=PHASE_REPEAT,
            distributions=fixed_distributions(study),
        )

    return open_run


def repeat_records(storage: Any, sweep_id: str) -> list[StudyRecord]:
    from ._studies import sweep_studies

    return list(sweep_studies(storage, sweep_id, PHASE_REPEAT).values())


def _interquartile_mean(values: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """The mean of the middle half: scipy.stats.trim_mean(values, 0.25), whose import alone takes
    longer than a sweep's whole bookkeeping (a quarter of the values, rounded down, cut at each end)."""
    import numpy as np

    cut = int(0.25 * len(values))
    return float(np.sort(values)[cut : len(values) - cut].mean())
