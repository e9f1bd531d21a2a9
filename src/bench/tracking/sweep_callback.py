"""The driver side of tracking: a Hydra callback that is the bench sweeper's SweepObserver.

It opens and closes the runs above a trial, and each trial's run, never logging from inside a job
(the job side is bench.tracking.trial_logger, which train() receives explicitly):
    on_sweep_plan      the store a sweep will log to answers (before anything is launched)
    on_sweep_start     start a local `mlflow server` over the SQLite file (default store) when
                       trials run outside the driver, open or reuse the benchmark run and one
                       child run per cell study
    on_trial_prepared  create the trial's run under its cell run (a seed repeat's too, tagged
                       bench.level=repeat and bench.seed) and hand the job its run id and the
                       tracking URI as config values (mlflow.run_id, mlflow.tracking_uri)
    on_trial_end       make the trial run's final state match the study's (KILLED for a trial
                       interrupted with its driver or left by a dead one); update the cell's best
    on_repeats_update  the cell run's test_mean, test_std, test_iqm and n_repeats
    on_sweep_end       results.csv/best.csv to the benchmark run; close cell and benchmark runs
A job gets a pickled copy of the callbacks (Ray, submitit): the driver's client and server stay
behind, and the copy does nothing where the job runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench.tracking import run_tree
from bench.tracking.store import check_store, embedded_root, settings_of, store_locations, warn_sqlite_multi_node
from bench.tracking.sweep_metrics import costs_of, log_front, log_trial_cost
from bench.tracking.trial_logger import app_config
from hydra_plugins.bench_sweeper.api import (
    BEST_CSV,
    MAXIMIZE,
    REPEATS_CSV,
    RESULTS_CSV,
    TRACKER_RUN_ID_ATTR,
    SweepError,
    SweepObserver,
    is_database_url,
    mask_data,
    mask_override,
    mask_text,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bench.tracking.server import LocalTrackingServer

log = logging.getLogger(__name__)
# In the sweep dir: where its benchmark run is, so `python -m bench.report` can log the report there.
TRACKING_FILE = "mlflow.json"


def _serve(settings: DictConfig, trials_in_driver: bool) -> bool:
    """Whether to put the SQLite file behind a local `mlflow server`. `auto` serves it only when
    trials run in other processes (Ray, SLURM): Hydra's basic launcher runs them one at a time in
    the driver, where nothing contends for the file, and the server's ~10 s start is saved."""
    serve = settings.get("serve", "auto")
    return not trials_in_driver if serve == "auto" else bool(serve)


def _write_tracking_file(sweep_dir: Path, uri: str, experiment: str, benchmark_run: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:  # never on disk: MLflow reads credentials from its env vars
        # A database keeps its user: libpq finds the password in ~/.pgpass or PGPASSWORD.
        user = f"{parts.username}@" if parts.username and is_database_url(uri) else ""
        uri = urlunsplit(
            parts._replace(netloc=user + (parts.hostname or "") + (f":{parts.port}" if parts.port else ""))
        )
    (sweep_dir / TRACKING_FILE).write_text(
        json.dumps({"tracking_uri": uri, "experiment": experiment, "benchmark_run": benchmark_run}, indent=1)
    )


def _named_by(cell: Any) -> dict[str, str]:
    """The task and model options the cell's composed config chose."""
    config = cell.config
    return run_tree.named_by(OmegaConf.select(config, "hydra.runtime.choices") if config is not None else None)


class SweepTracking(Callback, SweepObserver):
    def __init__(self) -> None:
        self._driver_reset()

    def _driver_reset(self) -> None:
        self.client: MlflowClient | None = None  # None: no sweep started, or its store has gone
        self.server: LocalTrackingServer | None = None
        self.uri = ""
        self.experiment_id = ""
        self.benchmark_run = ""
        self.cell_runs: dict[str, str] = {}
        self.best: dict[str, float] = {}
        # GPU-hours / CPU-hours so far per cell run and for the benchmark run, earlier runs of the sweep included
        self.spent: dict[str, dict[str, float]] = {}

    def __getstate__(self) -> dict:
        # Jobs get a pickled copy (Ray, submitit): the driver's client and server stay behind.
        return {}

    def __setstate__(self, state: dict) -> None:
        self._driver_reset()

    # ---- driver side ------------------------------------------------------------------------
    def on_sweep_plan(self, config: DictConfig) -> None:
        settings = settings_of(config)
        if settings is not None:
            check_store(settings.get("tracking_uri"), embedded_root() / "mlflow.db")
            warn_sqlite_multi_node(settings.get("tracking_uri"), config)

    def on_sweep_start(
        self,
        config: DictConfig,
        sweep_dir: str,
        cells: list,
        storage: str,
        resumed: bool,
        trials_in_driver: bool = False,
    ) -> None:
        settings = settings_of(config)
        if settings is None:
            return
        from mlflow import MlflowClient

        from bench.tracking.environment import git_commit, package_versions

        # MLflow's INFO lines (table creation, migrations) are not the sweep's business.
        logging.getLogger("mlflow").setLevel(logging.WARNING)

        uri, artifacts = store_locations(settings)
        store_uri = uri  # before serving: what stays reachable after this sweep's server has gone
        # SQLite, or a database server (postgresql://...): behind this sweep's `mlflow server`, so
        # trials log over HTTP with credentials made for this sweep and never see the database's.
        if (uri.startswith("sqlite:") or is_database_url(uri)) and _serve(settings, trials_in_driver):
            from bench.tracking.server import LocalTrackingServer

            if uri.startswith("sqlite:"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.server = LocalTrackingServer(
                uri, artifacts, Path(sweep_dir) / "mlflow_server.log", host=settings.get("serve_host", "127.0.0.1")
            )
            uri = self.server.start()
            self.server.watch()
        self.uri, self.client = uri, MlflowClient(uri)
        self.experiment_id = run_tree.ensure_experiment(self._store, settings.experiment, artifacts)
        self.sweep_dir = sweep_dir = str(Path(sweep_dir).resolve())

        found = run_tree.find_runs(
            self.client, self.experiment_id, **{run_tree.LEVEL: "benchmark", run_tree.SWEEP_DIR: sweep_dir}
        )
        if found:
            self.benchmark_run = found[0].info.run_id
            self._store.update_run(self.benchmark_run, status="RUNNING")
            self.spent[self.benchmark_run] = costs_of(found[0])
        else:
            self.benchmark_run = run_tree.create_run(
                self._store,
                self.experiment_id,
                f"benchmark {Path(sweep_dir).name}",
                {run_tree.LEVEL: "benchmark", run_tree.SWEEP_DIR: sweep_dir, "git_commit": git_commit()},
            )
            run_tree.log_params(
                self.client, self.benchmark_run, {f"version.{k}": v for k, v in package_versions().items()}
            )
        _write_tracking_file(Path(sweep_dir), store_uri, settings.experiment, self.benchmark_run)
        overrides = [mask_override(str(o)) for o in config.hydra.overrides.task]
        n = len(self._store.list_artifacts(self.benchmark_run, "invocations")) if found else 0
        run_tree.log_yaml(
            self._store,
            self.benchmark_run,
            app_config(config),
            "config.yaml" if not found else f"invocations/{n}/config.yaml",
        )
        run_tree.log_yaml(
            self._store,
            self.benchmark_run,
            overrides,
            "overrides.yaml" if not found else f"invocations/{n}/overrides.yaml",
        )
        for cell in cells:
            self._open_cell_run(cell, storage)
        log.info(
            "MLflow: experiment %r at %s, benchmark run %s",
            settings.experiment,
            mask_text(self.uri),
            self.benchmark_run,
        )

    def _open_cell_run(self, cell: Any, storage: str) -> None:
        """One run per cell study: reused on resume (with the best value it already reached), a
        new one when the cell's experiment changed and got a new study version."""
        existing = run_tree.find_runs(
            self._store,
            self.experiment_id,
            **{run_tree.LEVEL: "cell", run_tree.SWEEP_DIR: self.sweep_dir, run_tree.STUDY: cell.study_name},
        )
        if existing:
            run_id = existing[0].info.run_id
            self._store.update_run(run_id, status="RUNNING")
            if "best_value" in existing[0].data.metrics:
                self.best[cell.label] = existing[0].data.metrics["best_value"]
            self.spent[run_id] = costs_of(existing[0])
        else:
            run_id = run_tree.create_run(
                self._store,
                self.experiment_id,
                cell.label,
                {
                    run_tree.LEVEL: "cell",
                    run_tree.SWEEP_DIR: self.sweep_dir,
                    run_tree.CELL: cell.label,
                    run_tree.STUDY: cell.study_name,
                    **cell.coordinates,
                    **_named_by(cell),
                },
                parent_id=self.benchmark_run,
            )
            run_tree.log_params(
                self._store,
                run_id,
                mask_data(
                    {
                        "metric": cell.metric,
                        "direction": cell.direction,
                        "study_name": cell.study_name,
                        "storage": storage,
                    }
                ),
            )
            run_tree.log_yaml(self._store, run_id, app_config(cell.config), "config.yaml")
            run_tree.log_yaml(self._store, run_id, mask_data(cell.params), "search_space.yaml")
            run_tree.log_yaml(
                self._store, self.benchmark_run, mask_data(cell.params), f"search_spaces/{cell.label}.yaml"
            )
        self.cell_runs[cell.label] = run_id

    @property
    def _store(self) -> MlflowClient:
        """The client of a started sweep; its callers have checked that there is one (_reachable)."""
        if self.client is None:
            raise RuntimeError("MLflow tracking is used before on_sweep_start made its client")
        return self.client

    def _reachable(self) -> MlflowClient | None:
        """The client, while its store can answer. Once this sweep's own server has stopped, each call
        would only wait out MLflow's HTTP retries (minutes), so tracking stops with the server."""
        if self.server is not None and not self.server.alive:
            self.client = None
        return self.client

    def on_trial_prepared(self, cell: Any, trial: Any, phase: str = "tune") -> dict[str, Any] | None:
        if self._reachable() is None:
            if self.server is not None:  # its server has stopped: no trial starts that could not log
                raise SweepError(self.server.stopped_sentence())
            return None
        tags = {
            run_tree.LEVEL: "trial",
            run_tree.SWEEP_DIR: self.sweep_dir,
            run_tree.CELL: cell.label,
            run_tree.TRIAL: trial.number,
            run_tree.STUDY: cell.study_name,
            **cell.coordinates,
            **_named_by(cell),  # task and model, swept or not: runs filter on them
        }
        name = f"{cell.label} #{trial.number}"
        if phase == "repeat":
            seed = trial.user_attrs.get("seed")
            tags.update({run_tree.LEVEL: "repeat", run_tree.SEED: seed})
            name = f"{cell.label} seed {seed}"
        run_id = run_tree.create_run(self._store, self.experiment_id, name, tags, parent_id=self.cell_runs[cell.label])
        run_tree.log_params(self._store, run_id, mask_data(dict(trial.params)))
        trial.set_user_attr(TRACKER_RUN_ID_ATTR, run_id)
        return {"mlflow.run_id": run_id, "mlflow.tracking_uri": self.uri}

    def on_trial_end(
        self, cell: Any, trial: Any, job_return: Any, error: str | None, interrupted: bool = False, phase: str = "tune"
    ) -> None:
        run_id = trial.user_attrs.get(TRACKER_RUN_ID_ATTR)
        if self._reachable() is None or not run_id:
            return
        state = "INTERRUPTED" if interrupted else trial.state.name
        self._store.set_tag(run_id, run_tree.STATE, state)
        values = trial.values or []
        if len(values) == 1:
            self._store.log_metric(run_id, "objective", values[0])
        for i, value in enumerate(values if len(values) > 1 else []):  # a multi-objective trial
            self._store.log_metric(run_id, f"objective_{i}", value)
        self._log_cost(run_id, cell.label, trial.user_attrs)
        if interrupted or self._store.get_run(run_id).info.status in ("RUNNING", "SCHEDULED"):
            # The job never closed its run (it died, was stopped, or never launched): close it here.
            if error:
                self._store.log_text(run_id, mask_text(error), "error.txt")
            status = "KILLED" if interrupted else {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
            self._store.set_terminated(run_id, status)
        if state == "COMPLETE" and phase == "tune" and len(values) == 1:
            better = max if cell.direction == MAXIMIZE else min
            best = self.best.get(cell.label)
            if best is None or better(best, trial.value) == trial.value:
                self.best[cell.label] = trial.value
                cell_run = self.cell_runs[cell.label]
                self._store.log_metric(cell_run, "best_value", trial.value, step=trial.number)
                self._store.set_tag(cell_run, "best_trial", trial.number)
                for key, value in mask_data(trial.params).items():
                    self._store.set_tag(cell_run, f"best.{key}", value)

    def on_front_update(self, cell: Any, front: list) -> None:
        if self.client is not None:
            log_front(self._store, self.cell_runs[cell.label], cell, front)

    def _log_cost(self, run_id: str, label: str, attrs: dict[str, Any]) -> None:
        log_trial_cost(self._store, self.spent, run_id, [self.cell_runs[label], self.benchmark_run], attrs)

    def on_repeats_update(self, cell: Any, summary: dict[str, float]) -> None:
        if self.client is not None:
            for key, value in summary.items():
                self._store.log_metric(self.cell_runs[cell.label], key, value)

    def on_sweep_end(
        self, config: DictConfig, sweep_dir: str, error: BaseException | None, stopped_cells: list[str]
    ) -> None:
        try:
            if self._reachable() is None:
                return
            for name in (RESULTS_CSV, BEST_CSV, REPEATS_CSV):
                if (Path(sweep_dir) / name).exists():
                    self._store.log_artifact(self.benchmark_run, str(Path(sweep_dir) / name))
            interrupted = error is not None and not isinstance(error, Exception)  # Ctrl-C, SIGTERM
            for label, run_id in self.cell_runs.items():
                status = "KILLED" if interrupted else ("FAILED" if label in stopped_cells else "FINISHED")
                if error is not None and not interrupted and not stopped_cells:
                    status = "FAILED"
                self._store.set_terminated(run_id, status)
            status = "FINISHED" if error is None else ("KILLED" if interrupted else "FAILED")
            self._store.set_terminated(self.benchmark_run, status)
        finally:
            if self.server is not None:
                self.server.stop()
            self._driver_reset()
