"""Planning many cells on several cores: each cell's composition and checks, in forked workers.

Composing a cell is Hydra's full composition (about 50 ms on this 2-core machine), so a 24-cell
preset spent most of its dry run composing. The work of one cell needs nothing from another, and a
fork hands each worker the driver's loaded state (parsed config files, resolvers, the plugin scan)
for free, so the cells are shared out among forked workers and come back pickled.

Only an optimisation: with fork unavailable (macOS, Windows), few cells or one core, or when the
pool itself fails, cells are handled here in order; a cell whose handling raised in a worker is
handled again here, so its error is raised as it would have been without workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

# Below this many cells a fork costs more than it saves.
MIN_CELLS = 12
CELLS_PER_WORKER = 6
MAX_WORKERS = 8

_job: Callable[[int], Any] | None = None  # what each forked worker runs, inherited through the fork


def _run(index: int) -> tuple[bool, Any]:
    assert _job is not None  # set before the fork
    try:
        return True, _job(index)
    except BaseException:  # redone in the driver, which raises it the ordinary way
        return False, None


def map_cells(count: int, job: Callable[[int], Any]) -> list[Any]:
    """[job(0), ..., job(count - 1)], in order; job's results must pickle."""
    global _job
    workers = min(os.cpu_count() or 1, MAX_WORKERS, count // CELLS_PER_WORKER)
    if count < MIN_CELLS or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [job(i) for i in range(count)]
    _job = job
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            outcomes = pool.map(_run, range(count), chunksize=max(1, count // (workers * 2)))
    except Exception:  # a result that does not pickle, a worker that died: plan without workers
        outcomes = [(False, None)] * count
    finally:
        _job = None
    return [result if done else job(i) for i, (done, result) in enumerate(outcomes)]
