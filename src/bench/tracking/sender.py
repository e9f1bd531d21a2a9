"""One thread per trial that sends its MLflow requests in order, off the training loop.

Why not MLflow's own asynchronous logging: its queue thread wakes up once a second, and a trial
paid for that twice at its end (flush_async_logging ~0.9 s, then end_run's
shut_down_async_logging ~1 s) on trials whose fit takes 4-6 s. This queue's thread blocks on the
queue itself, so drain() returns as soon as the last request is sent: a few milliseconds after a
fit, whose last epoch was sent while Lightning tore down.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from hydra_plugins.bench_sweeper.api import mask_text

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, name: str) -> None:
        self._requests: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._failed = False
        # A daemon: a job stopped without closing its run (Ctrl-C) must not hang on its tracking.
        self._thread = threading.Thread(target=self._run, name=f"bench-mlflow-{name}", daemon=True)
        self._thread.start()

    def submit(self, request: Callable[[], None]) -> None:
        self._requests.put(request)

    def drain(self) -> None:
        """Every request submitted so far sent (or failed); the thread ends."""
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                request()
            except Exception as exc:  # lost points are not a failed trial; said once, masked
                if not self._failed:
                    log.warning(
                        "MLflow logging failed, the trial goes on: %s", mask_text(f"{type(exc).__name__}: {exc}")
                    )
                self._failed = True
