"""The rules the sweeper applies to what clusters and budgets tell it, each on the words or numbers
it is given: the budget counts trials in flight, CPU-hours budgets on CPU-only runs, sacct's
AllocTRES, sinfo's node lines, and which sbatch failures are retried. (The clusters themselves are
exercised in test_slurm.py and test_ray.py; these cases are ones a test cluster cannot produce,
such as GPUs in sacct or a QOS that refuses a job's size.)"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from hydra_plugins.bench_sweeper._budget import Budget
from hydra_plugins.bench_sweeper._cost import Cost, Grant, _gpus_in
from hydra_plugins.bench_sweeper._slurm import _minutes, _node, is_transient
from hydra_plugins.bench_sweeper._studies import PHASE_REPEAT, PHASE_TUNE


def run_of(label: str, phase: str = PHASE_TUNE, waiting: int = 0) -> SimpleNamespace:
    return SimpleNamespace(cell=SimpleNamespace(label=label), phase=phase, waiting=waiting, stopped=None)


def in_flight(run: SimpleNamespace, grant: Grant, running_s: float) -> SimpleNamespace:
    return SimpleNamespace(run=run, grant=grant, started=time.monotonic() - running_s)


def budget(seeds: int = 0, **conf) -> Budget:
    return Budget(
        OmegaConf.create({"gpu_hours": None, "cpu_hours": None, "per_cell": None, **conf}), Cost(0.0, 0.0), {}, seeds
    )


def test_a_trial_in_flight_counts_against_the_budget_before_it_ends():
    spending = budget(gpu_hours=1.0)
    cell = run_of("task=a")
    spending.add("task=a", Cost(0.4, 0.4), gpus_granted=1)  # one finished trial: 0.4 GPU-hours
    assert spending.refusal(cell, []) is None  # 0.4 spent + 0.4 expected <= 1
    # A second trial has run 0.1 h so far, but counts at its cell's mean (0.4): 0.4 + 0.4 + 0.4 > 1.
    refusal = spending.refusal(cell, [in_flight(cell, Grant(gpus=1, cpus=1), running_s=360)])
    assert refusal is not None and refusal.sweep_wide and "in flight" in refusal.reason
    # One that has already used more than the mean counts at what it used.
    long_running = in_flight(cell, Grant(gpus=1, cpus=1), running_s=0.5 * 3600)
    assert spending._in_flight(long_running, "gpu_hours", time.monotonic()) == pytest.approx(0.5, rel=1e-3)


def test_a_cpu_hours_budget_is_spent_by_cpu_only_trials_and_caps_cells_in_cpu_hours():
    spending = budget(cpu_hours=2.0, per_cell=0.7)
    assert spending.cell_unit == "cpu_hours"
    a, b = run_of("task=a"), run_of("task=b")
    spending.add("task=a", Cost(0.0, 0.5), gpus_granted=0)
    assert spending.refusal(a, []) is not None  # its own 0.5 + 0.5 expected > 0.7 per cell
    assert spending.refusal(a, []).sweep_wide is False
    assert spending.refusal(b, []) is None  # the sweep has 1.5 CPU-hours left, b has spent nothing
    spending.add("task=b", Cost(0.0, 0.6), gpus_granted=0)
    spending.add("task=c", Cost(0.0, 0.6), gpus_granted=0)
    refusal = spending.refusal(run_of("task=d"), [])  # 1.7 spent + ~0.57 expected > 2
    assert refusal is not None and refusal.sweep_wide and "cpu_hours=2" in refusal.reason


def test_a_cap_per_cell_is_on_tuning_alone_and_never_refuses_a_repeat():
    spending = budget(per_cell=1.0)
    tuning, repeats = run_of("task=a"), run_of("task=a", PHASE_REPEAT, waiting=2)
    spending.add("task=a", Cost(0.6, 0.6), gpus_granted=1)
    assert spending.refusal(tuning, []).sweep_wide is False  # 0.6 + 0.6 expected > 1
    assert spending.refusal(repeats, []) is None  # its repeats still run
    spending.add("task=a", Cost(5.0, 5.0), gpus_granted=1, tuning=False)  # a repeat's cost
    assert spending.by_cell["task=a"]["gpu_hours"] == 0.6  # not charged to the cell's tuning cap
    assert spending.estimate("task=a", "gpu_hours") == 0.6  # nor to the estimate of a tuning trial


def test_the_sweep_budget_keeps_room_for_the_repeats_still_owed():
    spending = budget(seeds=3, gpu_hours=10.0)
    a, b = run_of("task=a"), run_of("task=b")
    spending.runs = [a, b]
    spending.add("task=a", Cost(1.0, 1.0), gpus_granted=1)
    spending.add("task=b", Cost(1.0, 1.0), gpus_granted=1)
    # 2 spent + 3 seeds x 2 cells x 1 owed = 8: two more trials fit (2 + 8 = 10), a third does not.
    assert spending.owed("gpu_hours") == 6.0
    for _ in range(2):
        assert spending.refusal(a, []) is None
        spending.add("task=a", Cost(1.0, 1.0), gpus_granted=1)
    refusal = spending.refusal(a, [])
    assert refusal.sweep_wide and "kept for the repeats still owed" in refusal.reason
    # Once a's repeats are open, its queued seeds are what it owes, and a repeat needs no room beyond them.
    a_repeats = run_of("task=a", PHASE_REPEAT, waiting=3)
    spending.runs.append(a_repeats)
    assert spending.owed("gpu_hours") == 6.0 and spending.refusal(a_repeats, []) is None


@pytest.mark.parametrize(
    "tres, gpus",
    [
        ("billing=8,cpu=8,gres/gpu=2,mem=64G,node=1", 2.0),
        ("billing=8,cpu=8,gres/gpu:a100=2,gres/gpu=2,mem=64G,node=1", 2.0),  # typed entries repeat the total
        ("cpu=4,gres/gpu:h100=1,mem=32G,node=1", 1.0),  # only a typed entry
        ("billing=2,cpu=2,mem=2G,node=1", 0.0),
        ("", 0.0),
    ],
)
def test_gpus_are_read_from_sacct_alloctres(tres, gpus):
    assert _gpus_in(tres) == gpus


def test_sinfo_node_lines_give_each_nodes_size_and_time_limit():
    node = _node("gpu*|n01|64|515000|gpu:a100:4(S:0-1),gpu:t4:1|2-00:00:00")
    assert node == {
        "partition": "gpu",
        "default": True,
        "cpus": 64,
        "memory_mb": 515000.0,
        "gpus": 5,
        "minutes": 2 * 24 * 60,
    }
    assert _minutes("infinite") == float("inf") and _minutes("30:00") == 30 and _minutes("4:00:00") == 240


@pytest.mark.parametrize(
    "message, transient",
    [
        ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", True),
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", True),
        (
            "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates "
            "accounting/QOS policy (job submit limit, user's size and/or time limits)",
            True,
        ),
        # The same sentence for a job larger than its QOS allows: waiting never helps.
        (
            "sbatch: error: QOSMaxCpuPerJobLimit\nsbatch: error: Batch job submission failed: Job violates "
            "accounting/QOS policy (job submit limit, user's size and/or time limits)",
            False,
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
            False,
        ),
        ("sbatch: error: Batch job submission failed: Requested node configuration is not available", False),
    ],
)
def test_only_sbatch_failures_that_pass_are_retried(message, transient):
    assert is_transient(message) is transient
