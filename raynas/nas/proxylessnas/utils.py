"""NNI's ``nni.nas.pytorch.proxylessnas.utils``: ``detach_variable``, the label-smoothed loss, top-k accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["detach_variable", "cross_entropy_with_label_smoothing", "accuracy"]


def detach_variable(inputs: Any) -> Any:
    """A detached copy of a tensor (or a tuple of them) that keeps its ``requires_grad``."""
    if isinstance(inputs, tuple):
        return tuple(detach_variable(x) for x in inputs)
    x = inputs.detach()
    x.requires_grad = inputs.requires_grad
    return x


def cross_entropy_with_label_smoothing(
    pred: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy against one-hot targets smoothed by ``label_smoothing`` (over the classes of dim 1)."""
    n_classes = pred.size(1)
    soft_target = torch.zeros_like(pred).scatter_(1, target.unsqueeze(1), 1)
    soft_target = soft_target * (1 - label_smoothing) + label_smoothing / n_classes
    return torch.mean(torch.sum(-soft_target * F.log_softmax(pred, dim=1), 1))


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Top-k precision in percent for each ``k`` (a ``k`` above the number of classes counts them all)."""
    maxk = min(max(topk), output.size(1))
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[: min(k, maxk)].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res
