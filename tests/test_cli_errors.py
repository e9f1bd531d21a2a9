"""A typo on the command line is one sentence (bench/cli.py's usage_error), with or without -m: Hydra's
message and the nearest option or key, exit code 2, no traceback and nothing created."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.duration(30)

TYPOS = {
    "model=resnet50_unet": (
        "In 'config': Could not find 'model/resnet50_unet': did you mean model=resnet50?",
        "Valid options of model: clay_base, ",
    ),
    "task=synthetic_sge": ("Could not find 'task/synthetic_sge': did you mean task=synthetic_seg?", "synthetic_cls"),
    "hparams.lrr=0.1": (
        "Could not override 'hparams.lrr': did you mean hparams.lr?",
        "Valid keys of hparams: lr, batch_size, optimizer, optimizer_hparams",
    ),
    "hydra.sweeper.n_trails=3": (
        "Could not override 'hydra.sweeper.n_trails': did you mean hydra.sweeper.n_trials?",
        "Valid keys of hydra.sweeper: ",
    ),
    "search_spac=demo": ("Could not override 'search_spac': did you mean search_space?", "Valid keys of the config: "),
}


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
@pytest.mark.parametrize("typo", list(TYPOS))
def test_a_typo_is_one_sentence(run_cli, tmp_path, typo, multirun):
    result = run_cli(*(["-m"] if multirun else []), typo)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("bench: error: ")
    for part in TYPOS[typo]:
        assert part in lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no outputs/, multirun_outputs/ or MLflow store


def test_a_malformed_override_is_one_sentence(run_cli, tmp_path):
    result = run_cli("-m", "hparams.lr=choice(1,")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bench: error: no viable alternative at input 'choice(1,'"]


@pytest.mark.parametrize("variable", ["BENCH_DEBUG", "HYDRA_FULL_ERROR"])
def test_bench_debug_or_hydras_own_variable_brings_the_traceback_back(run_cli, variable):
    result = run_cli("model=resnet50_unet", env={variable: "1"})
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "MissingConfigException" in result.stderr
