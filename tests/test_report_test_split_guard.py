"""The report's test scores come only from seed repeats: bench.evaluation refuses a tuning trial that
asks for the test split, and evaluate_test=true in a sweep, before any training (no torch, no data).
(tests/test_test_split.py checks the same on real training, with unreadable test files.)"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from bench import errors, evaluation  # modules: their test_* / Test* names are not pytest's to collect
from bench.paths import CONFIG_DIR
from bench.preflight import check_cell
from bench.spec import build_spec
from hydra_plugins.bench_sweeper.trial import PHASE_REPEAT, PHASE_TUNE

wants_test = evaluation.wants_test

REFUSAL = "evaluate_test=true in a sweep: its tuning trials never read the test split"


class Trainer:
    """Records trainer.test calls; answers with the metrics TerraTorch would log (on validation, the
    same weights score otherwise: the splits are different samples)."""

    def __init__(self, metrics: dict[str, float]):
        self.metrics, self.calls, self.loggers = metrics, [], []

    def test(self, task, datamodule=None, ckpt_path=None, verbose=True):
        self.calls.append(ckpt_path)
        return [self.metrics]

    def validate(self, task, datamodule=None, ckpt_path=None, verbose=True):
        return [{key.replace("test/", "val/"): value / 2 for key, value in self.metrics.items()}]


@pytest.fixture
def hydra_cfg(tmp_path):
    """compose(*overrides, mode=...) -> the config a job sees, with HydraConfig set as in a run or a
    multirun (the sweeper's driver checks each cell with phase None, a multirun)."""

    def _compose(*overrides: str, mode: str = "RUN", trial: dict | None = None):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    f"output_dir={tmp_path / 'job'}",
                    f"data_dir={tmp_path / 'data'}",
                    "mlflow.enabled=false",
                    f"hydra.mode={mode}",
                    *overrides,
                ],
                return_hydra_config=True,
            )
        if trial is not None:
            with open_dict(cfg):
                cfg.trial = OmegaConf.create(trial)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    HydraConfig.instance().cfg = None  # other tests run outside any Hydra run


def test_a_tuning_trial_never_calls_trainer_test(compose_cfg):
    spec = build_spec(compose_cfg("task=synthetic_seg"))
    trainer = Trainer({"test/mIoU": 0.5, "test/Accuracy": 0.8})
    with pytest.raises(errors.TestSplitError, match=REFUSAL):
        evaluation.test_on_best_checkpoint(
            trainer, task=None, datamodule=None, checkpoint="best.ckpt", spec=spec, phase=PHASE_TUNE
        )
    assert trainer.calls == []  # refused before any test file is read
    # A repeat tests the same checkpoint and returns every metric the test split logged.
    assert evaluation.test_on_best_checkpoint(trainer, None, None, "best.ckpt", spec, PHASE_REPEAT) == trainer.metrics
    assert trainer.calls == ["best.ckpt"]


def test_wants_test_refuses_evaluate_test_in_a_tuning_trial_and_in_a_sweep(hydra_cfg):
    tuning = {"id": 3, "phase": PHASE_TUNE, "study": "s", "storage": "sqlite:///x.db"}
    with pytest.raises(errors.TestSplitError, match=REFUSAL):
        wants_test(hydra_cfg("evaluate_test=true", mode="MULTIRUN", trial=tuning), PHASE_TUNE)
    assert wants_test(hydra_cfg(mode="MULTIRUN", trial=tuning), PHASE_TUNE) is False  # tuning, no test asked
    # The sweeper's driver checks each cell (phase None) in the multirun before launching: refused there.
    with pytest.raises(errors.TestSplitError, match=REFUSAL):
        wants_test(hydra_cfg("evaluate_test=true", mode="MULTIRUN"), None)
    # A seed repeat always tests; a single run tests only when asked.
    assert wants_test(hydra_cfg(mode="MULTIRUN", trial={**tuning, "phase": PHASE_REPEAT}), PHASE_REPEAT) is True
    assert wants_test(hydra_cfg("evaluate_test=true"), None) is True
    assert wants_test(hydra_cfg(), None) is False


def test_the_sweepers_cell_check_refuses_evaluate_test_before_launching(hydra_cfg):
    with pytest.raises(errors.TestSplitError, match=REFUSAL):
        check_cell(hydra_cfg("task=synthetic_cls", "evaluate_test=true", mode="MULTIRUN"))
    with pytest.raises(errors.TestSplitError, match=REFUSAL):  # a tuning trial's own preflight too
        check_cell(hydra_cfg("evaluate_test=true", mode="MULTIRUN", trial={"id": 0, "phase": PHASE_TUNE}))
