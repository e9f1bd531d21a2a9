"""run_probe(cfg, spec): one trial of protocol=knn or protocol=linear_probe, on cached features.

The features of each split come from the embedding cache (bench.probes.cache), computed by the first trial
that needs them (bench.probes.embeddings) and read by every later trial and repeat of the cell: a tuning
trial needs the training and validation splits, a repeat also the test split (a tuning trial never
embeds or reads it). The probe is fitted on the training features, scored on validation under the task's
own metric names, and, when the job tests (a repeat), the fitted probe (its "best checkpoint") is scored
on the test split, with the same guards as fine-tuning (bench.evaluation). Returns what train() returns.
Imported inside the job only (torch).
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from bench.errors import SplitOverlapError, TestSplitError
from bench.evaluation import same_samples
from bench.probes import cache_dir, probe_kind
from bench.probes.cache import job_file_identity
from bench.spec import TrialSpec
from hydra_plugins.bench_sweeper.api import PHASE_TUNE

log = logging.getLogger(__name__)


class _Embedder:
    """Builds the model and the datamodule at most once per job, and only when an entry is missing."""

    def __init__(self, cfg: DictConfig, spec: TrialSpec) -> None:
        self.cfg, self.spec = cfg, spec
        self._model: Any = None
        self._datamodule: Any = None
        self._identity = job_file_identity()  # each data root listed once per job, not once per split

    @property
    def datamodule(self) -> Any:
        from bench.probes.embeddings import datamodule_for_features

        if self._datamodule is None:
            self._datamodule = datamodule_for_features(self.spec)
        return self._datamodule

    def features(self, split: str) -> Any:
        from bench.probes.cache import entry_key, get_or_build
        from bench.probes.embeddings import build_encoder, compute, key_inputs

        inputs = key_inputs(self.cfg, self.spec, split, self._identity)

        def build():
            if self._model is None:
                self._model = build_encoder(self.cfg, self.spec)
            return compute(self._model, self.datamodule, split, pooled=inputs["pooled"])

        return get_or_build(cache_dir(self.cfg), entry_key(inputs), inputs, build)


def run_probe(cfg: DictConfig, spec: TrialSpec) -> float | dict[str, Any]:
    import torch

    from bench.probes.heads import LinearProbe, Scorer, knn_logits, probe_loss

    kind, probe, task_type = probe_kind(cfg), cfg.probe, cfg.task.type
    torch.manual_seed(int(cfg.seed))
    embedder = _Embedder(cfg, spec)
    if spec.guards_splits:
        from bench.data.heldout import check_distinct

        embedder.datamodule.setup("fit")
        check_distinct(getattr(embedder.datamodule, "_proxy", embedder.datamodule), spec.task_name)
    splits = ["train", "val", *(["test"] if spec.tests else [])]
    entries = {split: embedder.features(split) for split in splits}
    built = [split for split, entry in entries.items() if entry.built]
    log.info(
        "%s: embeddings %s", spec.task_name, f"computed for {', '.join(built)}" if built else "all read from the cache"
    )
    arrays = {split: entry.arrays() for split, entry in entries.items()}
    train_x, train_y = arrays["train"]
    scorer = Scorer(spec, task_type)
    sign = 1.0 if spec.mode == "max" else -1.0

    extra: dict[str, dict[str, float]] = {}  # knn: the mean neighbour distance per split

    if kind == "knn":

        def predict(split: str) -> Any:
            logits, distance = knn_logits(
                train_x, train_y, arrays[split][0], int(probe.k), str(probe.distance), task_type
            )
            extra[split] = {f"{split}/neighbour_distance": distance}
            return logits

    else:
        num_outputs = int(spec.task_kwargs["model_args"]["num_classes"])
        head = LinearProbe(train_x, num_outputs, task_type, scorer.ignore_index)

        def predict(split: str) -> Any:
            x, y = arrays[split]
            return head.predict(x, tuple(y.shape[-2:]) if head.pixelwise else None)

        def val_score() -> float:
            return sign * evaluate("val")[spec.metric]

    def evaluate(split: str) -> dict[str, float]:
        logits, labels = predict(split), torch.from_numpy(arrays[split][1])
        scores = scorer.score(logits, labels, split, probe_loss(logits, labels, task_type, scorer.ignore_index))
        return {**scores, **extra.get(split, {})}

    if kind == "linear_probe":
        head.fit(train_x, train_y, float(probe.lr), float(probe.weight_decay), int(probe.epochs), val_score)
    val = evaluate("val")
    if spec.metric not in val:
        raise TestSplitError(
            f"task '{spec.task_name}': protocol={kind} scores {', '.join(sorted(val))}, not task.metric={spec.metric!r}"
        )
    value = val[spec.metric]
    log.info("%s: %s %s = %.4f (embeddings built here: %s)", spec.task_name, kind, spec.metric, value, built or "none")
    outputs = {"embeddings_built": len(built)}
    if not spec.tests:
        return {"value": value, **outputs}
    if spec.phase == PHASE_TUNE:  # preflight never lets a tuning trial test; the same guard as fine-tuning's
        raise TestSplitError("a tuning trial never reads the test split")
    test = evaluate("test")
    if same_samples(val, test, spec.stages):
        raise SplitOverlapError(
            f"task '{spec.task_name}': the fitted {kind} probe scores exactly the same on the validation and the test "
            "split: they are the same samples, so its test scores would be the validation scores that chose it. Give "
            "it a held-out test split, or hold out a validation set from the training split (task.validation_from_train)."
        )
    if spec.test_metric not in test:
        raise TestSplitError(f"task '{spec.task_name}': the test metric {spec.test_metric!r} was not computed")
    log.info("%s: %s = %.4f on the test split", spec.task_name, spec.test_metric, test[spec.test_metric])
    return {"value": value, "test_value": test[spec.test_metric], "checkpoint": "", **test, **outputs}
