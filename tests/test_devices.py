"""GPU visibility: each trial uses exactly the GPUs its launcher gave it."""

from __future__ import annotations

import pytest

from bench.devices import DeviceAssignment, assign_devices, processes_per_trial
from bench.errors import ConfigError


def test_auto_leaves_the_device_to_lightning():
    assert assign_devices("auto", {"CUDA_VISIBLE_DEVICES": "0,1"}) == DeviceAssignment("auto", 1, None)


def test_cpu_trial_sees_no_gpu():
    assignment = assign_devices(0, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert (assignment.accelerator, assignment.visible) == ("cpu", [])


def test_ray_reserved_gpus_win_over_the_environment():
    assignment = assign_devices(1, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, launcher_gpu_ids=[2])
    assert (assignment.accelerator, assignment.devices, assignment.visible) == ("gpu", 1, ["2"])


def test_slurm_gres_visibility_is_used_as_given():
    assignment = assign_devices(2, {"CUDA_VISIBLE_DEVICES": "1,3", "SLURM_JOB_ID": "7"})
    assert (assignment.devices, assignment.visible) == (2, ["1", "3"])


def test_an_unisolated_machine_is_restricted_to_the_trials_share():
    assert assign_devices(1, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}).visible == ["0"]


def test_no_visibility_information_trusts_the_launcher():
    assert assign_devices(1, {}) == DeviceAssignment("gpu", 1, None)


def test_fewer_gpus_than_requested_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"asked for 2 GPU\(s\).*gave it 1: 5"):
        assign_devices(2, {}, launcher_gpu_ids=[5])
    with pytest.raises(ConfigError, match="gave it 0: none"):
        assign_devices(1, {"CUDA_VISIBLE_DEVICES": ""})


@pytest.mark.parametrize("bad", ["two", -1])
def test_nonsense_requests_are_rejected(bad):
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        assign_devices(bad, {})


# Fractions of a GPU: Ray packs several trials onto one GPU (0.5: two) and gives each of them that
# GPU's id; the trial trains on that one device, shared.
@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_a_fraction_of_a_gpu_trains_on_the_one_gpu_ray_packed_it_onto(fraction):
    ray_packed = assign_devices(fraction, {"CUDA_VISIBLE_DEVICES": "3"}, launcher_gpu_ids=[3])
    assert ray_packed == DeviceAssignment("gpu", 1, ["3"])
    # Without a launcher's word, as for whole GPUs: the first visible one, or trust the launcher.
    assert assign_devices(fraction, {"CUDA_VISIBLE_DEVICES": "0,1"}) == DeviceAssignment("gpu", 1, ["0"])
    assert assign_devices(fraction, {}) == DeviceAssignment("gpu", 1, None)


def test_a_fraction_of_a_gpu_still_needs_a_gpu():
    with pytest.raises(ConfigError, match=r"asked for 0.5 GPU\(s\).*gave it 0: none"):
        assign_devices(0.5, {}, launcher_gpu_ids=[])


def test_more_than_one_gpu_must_be_whole_gpus():
    with pytest.raises(ConfigError, match=r"gpus_per_trial=1.5: a trial can share one GPU .* or use whole GPUs"):
        assign_devices(1.5, {"CUDA_VISIBLE_DEVICES": "0,1"})
    # 2 however it is written (YAML and the command line may give a float).
    for two in (2, 2.0, "2"):
        assert assign_devices(two, {}, launcher_gpu_ids=[4, 5]) == DeviceAssignment("gpu", 2, ["4", "5"])


def test_ray_is_asked_for_the_fraction(compose_cfg):
    from hydra import compose, initialize_config_dir

    from bench.paths import CONFIG_DIR
    from bench.preflight import check_cell

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["launcher=ray", "launcher.gpus_per_trial=0.5"], return_hydra_config=True)
    assert cfg.hydra.launcher.ray.remote.num_gpus == 0.5
    check_cell(compose_cfg("launcher=ray", "launcher.gpus_per_trial=0.5"))  # the driver's check lets it through


@pytest.mark.parametrize("fraction", ["launcher.gpus_per_trial=0.5", "+model.resources={gpus_per_trial: 0.25}"])
def test_slurm_refuses_a_fraction_of_a_gpu_before_launching(compose_cfg, fraction):
    from hydra import compose, initialize_config_dir

    from bench.paths import CONFIG_DIR
    from bench.preflight import check_cell

    # The sweeper runs check_cell on every cell's config in the driver, before any job is submitted.
    with pytest.raises(ConfigError, match=r"launcher=slurm with launcher.gpus_per_trial=0\.(5|25): SLURM allocates"):
        check_cell(compose_cfg("launcher=slurm", fraction))
    # The launcher itself is built before that check, so its whole-number gpus_per_node must still resolve.
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        launcher = compose("config", overrides=["launcher=slurm", fraction], return_hydra_config=True).hydra.launcher
    assert launcher.gpus_per_node == 1


def test_a_slurm_sweep_with_a_fraction_of_a_gpu_stops_with_a_sentence(run_cli, tmp_path):
    # check_resources=false: that check asks a SLURM controller (sinfo), and this test has none.
    result = run_cli(
        "-m",
        "launcher=slurm",
        "launcher.gpus_per_trial=0.5",
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.check_resources=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 1
    # One plain sentence (no traceback), from the cell check: nothing was submitted.
    assert result.stderr.startswith("bench: error: launcher=slurm with launcher.gpus_per_trial=0.5: SLURM allocates")
    assert "Traceback" not in result.stderr


# Multi-process trials (bench.ddp): N GPUs per trial -> N processes, one per GPU; a CPU trial asks
# for its processes with launcher.processes_per_trial (how the tests run DDP without GPUs).
@pytest.mark.parametrize(
    "launcher, processes",
    [
        ({"gpus_per_trial": "auto"}, 1),
        ({"gpus_per_trial": 0.5}, 1),
        ({"gpus_per_trial": 1}, 1),
        ({"gpus_per_trial": 2}, 2),
        ({"gpus_per_trial": 4.0, "processes_per_trial": 4}, 4),
        ({"gpus_per_trial": 0, "processes_per_trial": 2}, 2),
        ({"gpus_per_trial": 0, "processes_per_trial": None}, 1),
    ],
)
def test_processes_per_trial_is_one_per_gpu_or_the_cpu_count_asked(launcher, processes):
    assert processes_per_trial(launcher) == processes


@pytest.mark.parametrize(
    "launcher",
    [
        {"gpus_per_trial": 2, "processes_per_trial": 3},
        {"gpus_per_trial": 1, "processes_per_trial": 2},
        {"gpus_per_trial": "auto", "processes_per_trial": 2},
        {"gpus_per_trial": 0, "processes_per_trial": 0},
        {"gpus_per_trial": 0, "processes_per_trial": "two"},
    ],
)
def test_processes_per_trial_that_disagrees_with_the_gpus_is_a_sentence(launcher):
    with pytest.raises(ConfigError, match="processes_per_trial"):
        processes_per_trial(launcher)


def test_a_cpu_trial_of_two_processes_trains_on_two_cpu_devices():
    assert assign_devices(0, {}, processes=2) == DeviceAssignment("cpu", 2, [])
