"""A Lightning logger that sends a trial's metrics to its MLflow run once per epoch.

Imported only where Lightning already is (train._fit, the benchmarks): it imports torch.

Lightning calls log_metrics several times an epoch (training steps every log_every_n_steps, the
train-epoch aggregates, validation), each with the epoch it belongs to. Points are kept in the
TrialLogger's buffer and handed, as one log_batch request, to the trial's sender thread when the
first point of the next epoch arrives. The last epoch's points wait for the trial's end and go in
its closing request, with the objective and bench.state: a request the trial makes anyway, so the
end of a trial waits on two requests, not three (bench.tracking.trial_logger). The training loop
never waits on MLflow.
"""

from __future__ import annotations

import re
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bench.tracking.trial_logger import TrialLogger

_NOT_IN_A_NAME = re.compile(r"[^a-zA-Z0-9_/. -]+")  # MLflow's allowed characters, as MLFlowLogger strips them


class EpochBatchLogger(Logger):
    def __init__(self, trial: TrialLogger) -> None:
        super().__init__()
        self.trial = trial
        self._epoch: int | None = None

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.trial.run_id

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """The task's (and datamodule's) hyperparameters as params, as Lightning's MLFlowLogger
        logs them (flattened, 250 characters at most), masked; each once: one that is an hparams key
        (lr, optimizer_hparams/weight_decay) is the trial's hparams.<key> param already, and one with
        no value (None) says nothing."""
        flat = _flatten_dict(_convert_params(params))
        self.trial.log_params(
            {
                key: str(value)[:250]
                for key, value in flat.items()
                if value is not None and key.replace("/", ".") not in self.trial.hparams_keys
            }
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        epoch = metrics.get("epoch")
        if epoch is not None and self._epoch is not None and int(epoch) != self._epoch:
            self.trial.flush()  # the epoch before is complete: one request for all of it
        if epoch is not None:
            self._epoch = int(epoch)
        self.trial.log_metrics(
            {_NOT_IN_A_NAME.sub("", key): value for key, value in metrics.items() if not isinstance(value, str)},
            step or 0,
        )

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """The end of a fit or test: nothing to do. The run stays open (the trial closes it with its
        real outcome, and a repeat still tests after its fit), and the last epoch's points go with
        the closing request."""
