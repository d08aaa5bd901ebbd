"""The objective of every phase: a loss and metrics, as NNI's trainers take them.

- ``loss(output, target) -> tensor``: a scalar; it receives the model's output as it is (a tuple
  with auxiliary logits included). Default :func:`cross_entropy` (on the first element of a
  tuple output).
- ``metrics(output, target) -> dict``: name -> number (a float or a one-element tensor) for the
  batch, as NNI's ``metrics`` (``{"acc1": ..., "acc5": ...}``). Default :func:`accuracy`
  (``{"accuracy": ...}``). Evaluation averages each metric over the examples; a phase reports
  them as ``val_<name>`` (and ``test_<name>``), next to ``val_loss``.

In a config, ``supernet.loss`` / ``search.loss`` / ``retrain.loss`` (and ``metrics``) name them
as ``package.module:name``: a function, or a class built with no arguments (``torch.nn:CrossEntropyLoss``);
from Python, pass the callable itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from searchers.errors import ConfigError
from searchers.imports import import_object

__all__ = [
    "Loss",
    "Metrics",
    "accuracy",
    "cross_entropy",
    "check_objective",
    "logits_of",
    "metric_values",
    "resolve_loss",
    "resolve_metrics",
]

Loss = Callable[[Any, Any], torch.Tensor]
Metrics = Callable[[Any, Any], Mapping[str, Any]]


def logits_of(output: Any) -> Any:
    """The main output: the first element of a tuple / list output (``(logits, aux_logits)``)."""
    return output[0] if isinstance(output, (tuple, list)) and output else output


def cross_entropy(output: Any, target: torch.Tensor) -> torch.Tensor:
    """The default loss: cross-entropy of the main logits (:func:`logits_of`)."""
    return nn.functional.cross_entropy(logits_of(output), target)


def accuracy(output: Any, target: torch.Tensor) -> dict[str, float]:
    """The default metrics: ``{"accuracy": fraction of argmax predictions equal to the target}``."""
    logits = logits_of(output)
    n = max(int(target.shape[0]), 1)
    return {"accuracy": float((logits.argmax(dim=-1) == target).sum()) / n}


def _resolve(spec: Any, default: Callable, *, key: str) -> Callable:
    if spec is None:
        return default
    fn = import_object(spec, what=key, error=ConfigError) if isinstance(spec, str) else spec
    if isinstance(fn, type):  # a class such as torch.nn:CrossEntropyLoss: its instance
        try:
            fn = fn()
        except TypeError as exc:
            raise ConfigError(f"{key} {spec!r} is a class that cannot be built without arguments: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"{key} {spec!r} is a {type(fn).__name__}, not a callable")
    return fn


def resolve_loss(spec: str | Loss | None, *, key: str = "loss") -> Loss:
    """The loss named by ``spec`` (``None``: :func:`cross_entropy`).

    Raises:
        ConfigError: a path that does not import, or something that is not callable.
    """
    return _resolve(spec, cross_entropy, key=key)


def resolve_metrics(spec: str | Metrics | None, *, key: str = "metrics") -> Metrics:
    """The metrics function named by ``spec`` (``None``: :func:`accuracy`).

    Raises:
        ConfigError: a path that does not import, or something that is not callable.
    """
    return _resolve(spec, accuracy, key=key)


def metric_values(values: Any, *, key: str = "metrics") -> dict[str, float]:
    """A metrics function's result as ``{name: float}``.

    Raises:
        ConfigError: not a mapping of names to numbers or one-element tensors.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key} must return a dict of name -> number, got {type(values).__name__}")
    out = {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must return a dict of name -> number, got {name!r}: {value!r}")
        out[name] = float(value)
    return out


def check_objective(
    output: Any, target: Any, *, loss: Loss, metrics: Metrics, loss_key: str, metrics_key: str
) -> list[str]:
    """Call ``loss`` and ``metrics`` on one output, as a phase will.

    Returns:
        The names the metrics function returns.

    Raises:
        ConfigError: the loss is not a scalar tensor, or the metrics not a dict of numbers.
    """
    value = loss(output, target)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"{loss_key} must return a scalar tensor, got {shape}")
    return list(metric_values(metrics(output, target), key=metrics_key))
