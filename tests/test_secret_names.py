"""The one rule for which names hold secrets (hydra_plugins.bench_sweeper._masking.is_secret_key),
with its allow-list: every file, log and MLflow record a sweep writes is masked by it."""

from __future__ import annotations

import pytest

from hydra_plugins.bench_sweeper._masking import NOT_SECRET, is_secret_key

SECRET = [
    "password",
    "db.password",
    "DB_PASSWORD",
    "DBPASSWORD",
    "passwd",
    "pass",
    "pwd",
    "passphrase",
    "HF_TOKEN",
    "HFToken",
    "hf_token",
    "GHTOKEN",
    "oauth_token",
    "MYSECRET",
    "MY_SECRET",
    "client_secret",
    "secrets.anything",
    "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY",
    "apiKey",
    "api_key",
    "myapikey",
    "private_key",
    "auth",
    "authorization",
    "credentials",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "cookie",
    "+hydra.launcher.env.MYTOKEN",
    "password.value",
]
NOT = [
    "task.name",
    "lr",
    "compass",
    "author",
    "bypass",
    "passes",
    "tokenizer",
    "model.model_args.remove_cls_token",
    "cls_token",
    "mask_token",
    "max_tokens",
    "num_register_tokens",
    "backbone_tokenizer",
    "keyboard",
    "hparams.batch_size",
    "data_dir",
]


@pytest.mark.parametrize("name", SECRET)
def test_names_that_hold_secrets(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", NOT)
def test_names_that_do_not(name):
    assert not is_secret_key(name)


def test_every_allowed_name_contains_a_secret_word_so_the_list_is_needed_and_short():
    """Each entry would otherwise be judged secret; the list is the explicit exceptions, nothing else."""
    from hydra_plugins.bench_sweeper import _masking

    for name in NOT_SECRET:
        words = name.split("_")
        assert any(secret in word for word in words for secret in (*_masking.SECRET_INSIDE, *_masking.SECRET_WORDS)), (
            name
        )
    assert len(NOT_SECRET) <= 20


@pytest.mark.parametrize("name", ["HF_TOKEN", "MLFLOW_TRACKING_PASSWORD", "A=B", ""])
def test_forward_env_refuses_a_secret_or_a_malformed_name(name):
    """hydra.sweeper.forward_env ships values in Ray's runtime_env, which Ray shows in clear."""
    from hydra_plugins.bench_sweeper._dispatch import forwarded_env
    from hydra_plugins.bench_sweeper._errors import SweepConfigError

    with pytest.raises(SweepConfigError, match="forward_env"):
        forwarded_env(["BENCH_DATA_DIR", name])


def test_forward_env_takes_the_drivers_values_of_the_names_that_are_set(monkeypatch):
    from hydra_plugins.bench_sweeper._dispatch import forwarded_env

    monkeypatch.setenv("BENCH_CACHE_DIR", "/shared/cache")
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    assert forwarded_env(["BENCH_CACHE_DIR", "BENCH_DATA_DIR"]) == {"BENCH_CACHE_DIR": "/shared/cache"}


def test_a_sweep_forwarding_a_secret_is_refused_before_its_sweep_dir_exists(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m", "task=synthetic_cls", "hydra.sweeper.forward_env=[BENCH_DATA_DIR,HF_TOKEN]", f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode != 0
    assert "forward_env lists 'HF_TOKEN'" in result.stderr and "Traceback" not in result.stderr
    assert not sweep.exists()
