"""Checks that run before any training (and, in sweeps, before any job is launched).

Nothing here imports torch: a missing dataset or unreachable weights should cost a second, not
the 10-16 s torch import, and should read as a plain sentence rather than a traceback.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.devices import check_gpus_per_trial
from bench.errors import ConfigError, DatasetNotFoundError, PretrainedWeightsError
from bench.probes import check_probe
from bench.spec import TrialSpec, build_spec
from bench.splits import check_split_sources


def ensure_dataset(task: DictConfig) -> Path | None:
    """Make sure the task's dataset is where its config says; prepare it if the task can.

    Returns the dataset root, or None for a task that declares no `dataset` block.
    """
    dataset = task.get("dataset")
    if dataset is None:
        return None
    root = Path(dataset.root).expanduser()
    missing = [rel for rel in dataset.get("required") or [] if not (root / rel).exists()]
    if missing and dataset.get("prepare") is not None:
        instantiate(dataset.prepare, root=str(root))
        missing = [rel for rel in missing if not (root / rel).exists()]
    if missing:
        env = dataset.get("env")
        env_note = ""
        if env:
            value = os.environ.get(env)
            env_note = f" The root comes from ${env} ({'currently ' + repr(value) if value else 'not set, so the default was used'})."
        raise DatasetNotFoundError(
            f"Dataset for task '{task.name}' not found: expected {', '.join(str(root / m) for m in missing)}."
            f"{env_note} To get it: {dataset.get('how_to_get') or 'see the task config'}."
        )
    return root


def _weights_hint(model: DictConfig, local_key: str | None, repo_id: str, filename: str) -> str:
    cache = (
        "copy a Hugging Face cache that holds it to this machine and point HF_HOME at it; or train from "
        "random weights with model.model_args.backbone_pretrained=false."
    )
    if not local_key:
        return f"Either {cache}"
    # `+` when the model config does not declare the key yet, as Hydra requires for new keys (a
    # declared key may hold null: select() cannot tell that from absent, its parent node can).
    parent_key, _, leaf = local_key.rpartition(".")
    parent = OmegaConf.select(model.model_args, parent_key) if parent_key else model.model_args
    prefix = "" if OmegaConf.is_dict(parent) and leaf in parent.keys() else "+"
    return (
        "Either download it where the hub is reachable "
        f"(`hf download {repo_id} {filename} --local-dir DIR`) and run with "
        f"{prefix}model.model_args.{local_key}=DIR/{filename}; or {cache}"
    )


def check_pretrained_weights(model: DictConfig) -> None:
    """Fail early and plainly when a pretrained backbone's weights cannot be had.

    Only models that name their `pretrained_weights` are checked. A local file set at
    `pretrained_weights.local_file_key` (a model_args key) wins over the hub.
    """
    args = model.model_args
    weights = model.get("pretrained_weights")
    if not args.get("backbone_pretrained", False) or weights is None:
        return
    # null: the model has no model_args key that loads a local copy (Clay: only a cache works).
    local_key = weights.get("local_file_key", "backbone_ckpt_path")
    local_file = OmegaConf.select(args, local_key, default=None) if local_key else None
    if local_file:
        if not Path(local_file).expanduser().is_file():
            raise PretrainedWeightsError(
                f"model={model.name}: model_args.{local_key}={local_file!r} is not a file. Point it at the "
                "downloaded weights, or unset it to use the Hugging Face Hub."
            )
        return
    repo_id, filename = weights.repo_id, weights.filename
    reason = _hub_problem(repo_id, filename)
    if reason is not None:
        import huggingface_hub

        raise PretrainedWeightsError(
            f"model={model.name} needs pretrained weights {repo_id}/{filename} from the Hugging Face Hub "
            f"({huggingface_hub.hf_hub_url(repo_id, filename)}), but {reason}. "
            f"{_weights_hint(model, local_key, repo_id, filename)}"
        )


def _hub_problem(repo_id: str, filename: str) -> str | None:
    """None when the file is cached locally or the hub serves it; otherwise why not."""
    import huggingface_hub
    from huggingface_hub import constants as hf_constants

    if isinstance(huggingface_hub.try_to_load_from_cache(repo_id, filename), str) or _in_torch_hub_cache(filename):
        return None
    if hf_constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and the file is not in the local Hugging Face cache"
    return _hub_unreachable(huggingface_hub.hf_hub_url(repo_id, filename))


def _in_torch_hub_cache(filename: str) -> bool:
    """TerraTorch fetches TorchGeo's weights (DOFA, SSL4EO, Satlas) with torch.hub, which keeps them
    in $TORCH_HOME/hub/checkpoints (torch.hub.get_dir(), computed here without importing torch)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return (Path(torch_home) / "hub" / "checkpoints" / filename).is_file()


@functools.cache
def _hub_unreachable(url: str) -> str | None:
    """Asked once per URL and process: a benchmark's cells share their models, so a dry run of
    12 tasks x 2 models asks the hub twice, not 24 times."""
    import huggingface_hub

    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=10)
        return None  # reachable: TerraTorch downloads it when the model is built
    except Exception as exc:  # any network/HTTP failure means the same thing to the user
        return f"the hub could not be reached ({type(exc).__name__}: {exc})"


def _input_problems(cfg: DictConfig) -> list[Exception]:
    """Weights and data, each checked even when the other is missing, so a user fixes both at once."""
    problems: list[Exception] = []
    for check, node in ((check_pretrained_weights, cfg.model), (ensure_dataset, cfg.task)):
        try:
            check(node)
        except (PretrainedWeightsError, DatasetNotFoundError) as exc:
            problems.append(exc)
    return problems


def _checked(cfg: DictConfig) -> tuple[TrialSpec, list[Exception]]:
    """The merged spec with the trial's context (its own errors raise at once), then every missing
    input. The trial's phase and number (the sweeper's trial node) and whether it tests are decided
    here, once, and travel on the spec: train() and its modules read them there."""
    from bench.evaluation import test_plan
    from hydra_plugins.bench_sweeper.api import trial_number, trial_phase

    phase = trial_phase(cfg)
    spec = replace(build_spec(cfg), phase=phase, trial_number=trial_number(cfg))
    check_probe(cfg)  # protocol=knn|linear_probe: the task type it serves, its settings, its cache dir
    # evaluate_test=true is refused in a sweep, before launching; a sweep's cells (whose repeats test)
    # and a single run that tests must test on samples the validation split does not hold.
    tests, sweeping = test_plan(cfg, phase)
    if tests or sweeping:
        check_split_sources(spec.task_name, spec.datamodule, spec.heldout)
    if not sweeping:  # a sweep's tracker checks its store while planning (on_sweep_plan)
        _check_tracking(cfg)
    check_gpus_per_trial(cfg)  # 1.5 GPUs, or a fraction of one on SLURM, before launching
    return replace(spec, tests=tests), _input_problems(cfg)


def _check_tracking(cfg: DictConfig) -> None:
    settings = cfg.get("mlflow")
    if settings is not None and settings.get("enabled", True):
        from bench.tracking.store import check_store

        check_store(settings.get("tracking_uri"), Path.cwd() / "multirun_outputs" / "mlflow.db")


def preflight(cfg: DictConfig) -> TrialSpec:
    """All checks a job needs before training; returns the merged spec with the trial's context."""
    spec, problems = _checked(cfg)
    if problems:
        raise problems[0]
    return spec


def check_cell(cfg: DictConfig) -> None:
    """The sweeper's cell_check: the same checks, every input problem of the cell at once (an
    ExceptionGroup when there are several); the sweeper lists each problem once for all cells. A
    cell its model cannot take (bands, task type) still says what data it lacks, so a benchmark's
    dry run names every missing dataset, whichever models it pairs them with."""
    try:
        _, problems = _checked(cfg)
    except ConfigError as exc:
        problems = [exc, *_input_problems(cfg)]
    if len(problems) > 1:
        raise ExceptionGroup(f"{len(problems)} inputs of this cell are missing", problems)
    if problems:
        raise problems[0]
