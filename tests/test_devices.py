"""GPU visibility: each trial uses exactly the GPUs its launcher gave it."""

from __future__ import annotations

import pytest

from bench.devices import DeviceAssignment, assign_devices
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
