"""Weight-sharing evaluation: score an architecture on trained supernet weights.

For each architecture (in any fixed form of :mod:`searchers.space`): build a fresh model from the
factory, fix the architecture (``apply_fixed_architecture`` prunes single-choice LayerChoices),
copy the supernet weights in, reset the BatchNorm statistics and recalibrate them on
``bn_batches`` training batches (cumulative average, in train mode, without gradients), then
score the validation split in eval mode (:func:`evaluate_loop`). Every architecture sees the same
recalibration batches. The data is read through :class:`raynas.train.loader.Loader` (a split that
fits 512 MiB is read once and kept; a larger one streams through the loader's workers).

The returned metrics are ``{"val_loss", "val_accuracy", "params", "flops"}`` (``params``: the
fixed model's parameters; ``flops``: per example, as :mod:`raynas.nas.costs` counts them); with
``metrics=``, ``val_<name>`` for each name it returns instead of ``val_accuracy``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.costs import profile_costs
from raynas.nas.fixed import apply_fixed_architecture, copy_supernet_weights, load_architecture
from raynas.train.checkpoint import load_checkpoint
from raynas.train.data import Batches as _Batches
from raynas.train.data import as_data_spec, first_examples
from raynas.train.loader import CachedBatches, OrderSampler
from raynas.train.objective import metric_values, resolve_loss, resolve_metrics
from raynas.train.resolve import pick_device, resolve_factory
from searchers.errors import ConfigError, ConfigKeyError

__all__ = [
    "WeightSharingEvaluator",
    "evaluate_architecture",
    "evaluate_loop",
    "recalibrate_batchnorm",
    "load_supernet_weights",
]


def evaluate_loop(
    model: nn.Module,
    batches: Iterable[tuple[Any, torch.Tensor]],
    *,
    criterion: Callable,
    metrics: Callable | None = None,
    metrics_key: str = "metrics",
) -> dict[str, float]:
    """The evaluation loop of every phase (search scoring, retrain validation and test, ``eval``):
    the model in eval mode, no gradients, the loss and each metric averaged over the examples.

    Args:
        model: the model (its train / eval mode is restored afterwards).
        batches: ``(x, y)`` batches on the model's device.
        criterion: the loss ``f(output, target)``, a mean over the batch.
        metrics: ``f(output, target) -> {name: number}`` (batch means; default: the accuracy).
        metrics_key: the setting that named ``metrics``, for errors.

    Returns:
        ``{"loss", <metric names>}`` (all 0 without a batch).
    """
    metrics = metrics or resolve_metrics(None)
    was_training = model.training
    model.eval()
    loss_sum, sums, total = 0.0, {}, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                out = model(x)
                n = int(y.shape[0])
                loss_sum += float(criterion(out, y)) * n
                for name, value in metric_values(metrics(out, y), key=metrics_key).items():
                    sums[name] = sums.get(name, 0.0) + value * n
                total += n
    finally:
        model.train(was_training)
    return {"loss": loss_sum / max(total, 1), **{k: v / max(total, 1) for k, v in sums.items()}}


def load_supernet_weights(weights: Any) -> dict[str, torch.Tensor]:
    """Supernet weights from a state dict, a checkpoint file, a run directory, or a result.

    Raises:
        FileNotFoundError: a path that holds no checkpoint.
        TypeError: anything else.
    """
    if hasattr(weights, "checkpoint") and hasattr(weights, "out_dir"):  # a SupernetResult
        weights = weights.checkpoint
    if isinstance(weights, (str, os.PathLike)):
        return load_checkpoint(Path(weights))["model"]
    if isinstance(weights, nn.Module):
        return weights.state_dict()
    if isinstance(weights, Mapping):
        if "format" in weights and "model" in weights:  # a loaded checkpoint
            return dict(weights["model"])
        return dict(weights)
    raise TypeError(
        "supernet weights must be a state dict, a checkpoint path, a run directory or a SupernetResult, "
        f"got {type(weights).__name__}"
    )


def recalibrate_batchnorm(model: nn.Module, batches: list[Any]) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on ``batches`` (model
    inputs, each called ``model(x)``: a tensor, or a tuple / list / dict of tensors).

    Returns:
        The number of BatchNorm layers recalibrated (0: nothing to do, the model is unchanged).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or not batches:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the recalibration batches
        model.train()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


class WeightSharingEvaluator:
    """Scores many architectures on one set of supernet weights (data and weights loaded once).

    Construction stores its arguments; data and weights are loaded on the first evaluation.

    Args:
        factory: the supernet's model factory (callable or ``"module:function"``).
        weights: supernet weights (state dict, checkpoint path, run directory, or result).
        data: a :class:`~raynas.train.data.DataSpec`, or the splits (mapping, or callable /
            ``"module:function"`` returning one), built on the first evaluation.
        bn_batches: training batches for BatchNorm recalibration (0: keep the supernet's stats).
        batch_size: recalibration batch size.
        split: the split to score (``val`` by default).
        eval_batch_size: batch size when scoring.
        seed: picks the recalibration batches (the same for every architecture).
        device: ``None``: CUDA when present, else the CPU.
        criterion: the loss ``f(output, target)``, a callable or ``"module:name"`` (default
            cross-entropy).
        metrics: ``f(output, target) -> {name: number}``, a callable or ``"module:name"``,
            reported as ``val_<name>`` (default: the accuracy, ``val_accuracy``).
    """

    def __init__(
        self,
        *,
        factory: Callable[[], nn.Module] | str,
        weights: Any,
        data: Any,
        bn_batches: int = 10,
        batch_size: int = 64,
        split: str = "val",
        eval_batch_size: int = 500,
        seed: int = 0,
        device: str | torch.device | None = None,
        criterion: Callable | str | None = None,
        metrics: Callable | str | None = None,
    ):
        checks = (("bn_batches", bn_batches, 0), ("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1))
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        self.factory = factory
        self.weights = weights
        self.data = data
        self.bn_batches = bn_batches
        self.batch_size = batch_size
        self.split = split
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device = device
        self.criterion = criterion
        self.metrics = metrics
        self._ready = False
        self._meta_ok: bool | None = None

    def _setup(self) -> None:
        if self._ready:
            return
        self._device = pick_device(self.device)
        self._factory = resolve_factory(self.factory)
        self._criterion = resolve_loss(self.criterion, key="search.loss")
        self._metrics = resolve_metrics(self.metrics, key="search.metrics")
        spec = as_data_spec(self.data)
        splits = spec.splits()  # built here, in the trial's process
        if self.split not in splits:
            raise ConfigKeyError(f"the data has no split {self.split!r} (splits: {', '.join(map(str, splits))})")
        self._state = {k: v.to(self._device) for k, v in load_supernet_weights(self.weights).items()}
        train = splits["train"]
        order = np.random.default_rng([self.seed, 0xB7]).permutation(len(train))
        n = min(self.bn_batches, len(train) // self.batch_size) if len(train) >= self.batch_size else 0
        size = self.batch_size if n else len(train)  # a split smaller than a batch: one batch of all of it
        order = order[: n * self.batch_size] if n else (order if self.bn_batches else order[:0])
        recal = OrderSampler(order, batch_size=max(size, 1), seed=[self.seed, 0xB7])
        self._recal = [x for x, _y in spec.loader(train, recal, self._device)] if len(order) else []
        target = splits[self.split]
        self._example = first_examples(_Batches(target, self._device).take(torch.arange(1))[0], 1)
        sampler = OrderSampler(len(target), batch_size=self.eval_batch_size, seed=[self.seed, 0xE7A1])
        self._eval = CachedBatches(spec.loader(target, sampler, self._device))
        self._ready = True

    def build(self, arch: Any) -> tuple[nn.Module, Any]:
        """A fresh fixed model holding the supernet weights (BatchNorm not yet recalibrated)."""
        self._setup()
        arch = load_architecture(arch)
        if self._meta_ok is not False:
            # build without initialising weights (they are all overwritten by the supernet's)
            with torch.device("meta"):
                model = self._factory()
            mutator = apply_fixed_architecture(model, arch)
            state_keys = set(model.state_dict())
            complete = all(name in state_keys for name, _ in model.named_buffers()) and all(
                name in state_keys for name, _ in model.named_parameters()
            )
            if complete:
                self._meta_ok = True
                model.to_empty(device=self._device)
                copy_supernet_weights(self._state, model)
                return model, mutator
            mutator.detach()
            self._meta_ok = False  # non-persistent buffers: build normally from now on
        model = self._factory()
        mutator = apply_fixed_architecture(model, arch)
        model.to(self._device)
        copy_supernet_weights(self._state, model)
        return model, mutator

    def evaluate(self, arch: Any) -> dict[str, float]:
        """Score one architecture.

        Returns:
            ``{"val_loss", "val_<metric>" for each metric (default: "val_accuracy"), "params", "flops"}``.

        Raises:
            SearchSpaceError: the architecture does not fit the space (names the key and value).
        """
        model, mutator = self.build(arch)
        recalibrate_batchnorm(model, self._recal)
        scores = evaluate_loop(
            model, self._eval, criterion=self._criterion, metrics=self._metrics, metrics_key="search.metrics"
        )
        costs = profile_costs(mutator, self._example)
        params, flops = costs.cost(mutator.decisions)
        return {
            **{f"val_{k}": v for k, v in scores.items()},
            "params": int(sum(p.numel() for p in model.parameters())),
            "flops": int(flops),
        }


def evaluate_architecture(
    factory: Callable[[], nn.Module] | str,
    arch: Any,
    *,
    weights: Any,
    data: Any,
    bn_batches: int = 10,
    batch_size: int = 64,
    split: str = "val",
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Score one architecture by weight sharing (see :class:`WeightSharingEvaluator`).

    Args:
        factory: the supernet's model factory.
        arch: the architecture, in any fixed form (dict or JSON file).
        weights: supernet weights (state dict, checkpoint path, run directory, or result).
        data: the data splits.
        bn_batches: training batches for BatchNorm recalibration.
        batch_size: recalibration batch size.
        split: the split to score.
        seed: picks the recalibration batches.
        device: ``None``: CUDA when present, else the CPU.

    Returns:
        ``{"val_accuracy", "val_loss", "params", "flops"}``.
    """
    evaluator = WeightSharingEvaluator(
        factory=factory,
        weights=weights,
        data=data,
        bn_batches=bn_batches,
        batch_size=batch_size,
        split=split,
        seed=seed,
        device=device,
    )
    return evaluator.evaluate(arch)
