"""The probes' heads on cached features, scored with the TerraTorch task's own metrics.

  knn     k nearest training samples by cosine or euclidean distance; classification: their majority
          vote (ties: the nearer neighbours' label), multi-label: the share of neighbours with each label
  linear  logistic regression (a linear layer, softmax or sigmoid) on standardised pooled features, or a
          1x1 linear head per pixel for segmentation (logits upsampled to the label size), AdamW for
          probe.epochs full passes; the weights of its best validation epoch are kept (the probe's
          "best checkpoint")
Metrics: the task class's configure_metrics (val/Accuracy, val/Multilabel_F1_Score, val/mIoU, ...), so a
probe's numbers are named and computed as the fine-tuning trials' are; `<split>/loss` is the probe's own
cross-entropy. Imported inside the job only (torch).
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import numpy as np


def task_metrics(spec: Any) -> tuple[Any, Any]:
    """(val metrics, test metrics): the MetricCollections the task class would log."""
    module_name, class_name = spec.task_class.rsplit(".", 1)
    task_class = getattr(importlib.import_module(module_name), class_name)
    kwargs = spec.task_kwargs
    holder = SimpleNamespace(
        hparams={
            "model_args": kwargs.get("model_args", {}),
            "ignore_index": kwargs.get("ignore_index"),
            "class_names": kwargs.get("class_names"),
            "test_dataloaders_names": None,
        }
    )
    task_class.configure_metrics(holder)
    return holder.val_metrics, holder.test_metrics[0]


def _tensor(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


class Scorer:
    """Scores predictions (class logits or probabilities) against labels, as the task class would."""

    def __init__(self, spec: Any, task_type: str) -> None:
        self.spec, self.task_type = spec, task_type
        self.ignore_index = spec.task_kwargs.get("ignore_index")

    def score(self, logits: Any, labels: Any, split: str, loss: float) -> dict[str, float]:
        import torch

        val, test = task_metrics(self.spec)
        metrics = val if split == "val" else test
        if self.task_type == "multilabel_classification":
            metrics.update(torch.sigmoid(logits), labels.to(torch.int32))
        else:
            metrics.update(logits.argmax(dim=1), labels.long())
        out = {key: float(value) for key, value in metrics.compute().items()}
        out[f"{split}/loss"] = float(loss)
        return out


def knn_logits(
    train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, k: int, distance: str, task_type: str
) -> tuple[Any, float]:
    """Class scores from the k nearest training samples: log vote shares (multi-class) or logits of the
    neighbours' label shares (multi-label), so the Scorer reads them as the heads' outputs; and the mean
    distance to those neighbours (a continuous value two different sets of samples do not share, which
    the validation-is-not-test check needs when the votes are all unanimous)."""
    import torch

    a, b = _tensor(train_x).float(), _tensor(x).float()
    if distance == "cosine":
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    k = min(k, len(a))
    chosen, distances = [], []
    for start in range(0, len(b), 1024):
        part = b[start : start + 1024]
        near = part @ a.T if distance == "cosine" else -torch.cdist(part, a)
        top = near.topk(k, dim=1)
        chosen.append(top.indices)
        distances.append(1 - top.values if distance == "cosine" else -top.values)
    index = torch.cat(chosen)  # (N, k), nearest first
    mean_distance = float(torch.cat(distances).mean())
    y = _tensor(train_y)
    eps = 1e-4
    if task_type == "multilabel_classification":
        share = y[index].float().mean(dim=1).clamp(eps, 1 - eps)
        return torch.log(share / (1 - share)), mean_distance
    classes = int(max(int(y.max()), 0) + 1)
    votes = torch.nn.functional.one_hot(y[index].long().clamp(min=0), classes).float()
    weights = 1.0 + 1e-3 / (1 + torch.arange(k, dtype=torch.float32))  # ties go to the nearer neighbours
    share = (votes * weights[None, :, None]).sum(dim=1) / weights.sum()
    return torch.log(share.clamp(min=eps)), mean_distance


def probe_loss(logits: Any, labels: Any, task_type: str, ignore_index: int | None) -> float:
    import torch.nn.functional as F

    if task_type == "multilabel_classification":
        return float(F.binary_cross_entropy_with_logits(logits, labels.float()))
    ignore = -100 if ignore_index is None else int(ignore_index)
    return float(F.cross_entropy(logits, labels.long(), ignore_index=ignore))


class LinearProbe:
    """A linear head on fixed features, trained with AdamW (full-batch passes in mini-batches)."""

    def __init__(self, train_x: np.ndarray, num_outputs: int, task_type: str, ignore_index: int | None) -> None:
        import torch

        x = _tensor(train_x).float()
        dims = (0,) if x.ndim == 2 else (0, 2, 3)
        self.mean, self.std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True).clamp(min=1e-6)
        channels = x.shape[1]
        self.pixelwise = x.ndim == 4
        self.head = (
            torch.nn.Conv2d(channels, num_outputs, 1) if self.pixelwise else torch.nn.Linear(channels, num_outputs)
        )
        self.task_type, self.ignore_index = task_type, ignore_index

    def logits(self, x: Any, size: tuple[int, ...] | None = None) -> Any:
        import torch.nn.functional as F

        out = self.head((x.float() - self.mean) / self.std)
        if self.pixelwise and size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def predict(self, x: np.ndarray, size: tuple[int, ...] | None = None) -> Any:
        import torch

        with torch.no_grad():
            return torch.cat([self.logits(_tensor(x[i : i + 256]), size) for i in range(0, len(x), 256)])

    def fit(
        self, train_x: np.ndarray, train_y: np.ndarray, lr: float, weight_decay: float, epochs: int, evaluate
    ) -> None:
        """`evaluate()` (-> a score, higher is better) after each of 10 evenly spaced epochs; the best
        epoch's weights are kept."""
        import copy

        import torch

        x, y = _tensor(train_x), _tensor(train_y)
        size = tuple(y.shape[-2:]) if self.pixelwise else None
        optimizer = torch.optim.AdamW(self.head.parameters(), lr=lr, weight_decay=weight_decay)
        checks = set(np.linspace(1, epochs, min(epochs, 10)).round().astype(int).tolist())
        best, best_state = -np.inf, None
        batch = 256 if not self.pixelwise else 16
        for epoch in range(1, epochs + 1):
            for i in torch.randperm(len(x)).split(batch):
                logits = self.logits(x[i], size)
                loss = _loss_tensor(logits, y[i], self.task_type, self.ignore_index)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if epoch in checks:
                score = evaluate()
                if score > best or best_state is None:
                    best, best_state = score, copy.deepcopy(self.head.state_dict())
        if best_state is not None:
            self.head.load_state_dict(best_state)


def _loss_tensor(logits: Any, labels: Any, task_type: str, ignore_index: int | None) -> Any:
    import torch.nn.functional as F

    if task_type == "multilabel_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    ignore = -100 if ignore_index is None else int(ignore_index)
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore)
