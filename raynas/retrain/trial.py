"""One retrain trial: :class:`RetrainSetup` (what it needs) and :func:`train_fixed` (one fixed
architecture trained from scratch, reporting each epoch with a checkpoint)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from raynas.nas.fixed import apply_fixed_architecture
from raynas.retrain.rows import HISTORY_KEYS
from raynas.train.data import as_data_spec
from raynas.train.evaluate import evaluate_loop
from raynas.train.loader import CachedBatches, OrderSampler, ShardSampler
from raynas.train.objective import resolve_loss, resolve_metrics
from raynas.train.resolve import check_precision, pick_device
from raynas.train.step import WeightStep

__all__ = ["RetrainSetup", "train_fixed"]


_EVAL_BATCH = 500  # examples per evaluation batch

#: the per-epoch figures a row's ``history`` keeps (a JSON list of ``{key: value}``, one per epoch)


class RetrainSetup:
    """What a retrain trial needs (small and picklable); its training settings are read by the
    same :class:`~raynas.train.step.WeightStep` (optimizer, learning-rate schedule, clipping,
    precision) and :func:`~raynas.train.resolve.pick_device` as supernet training's.

    Args:
        model_factory: zero-argument model factory.
        data_factory: a :class:`~raynas.train.data.DataSpec`, or a zero-argument function returning
            the data splits (called in each trial).
        archs: the architectures to retrain, best first (exported form).
        search_scores: their weight-sharing scores (``None`` where unknown).
        epochs: training epochs.
        optimizer: ``adam`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: L2 weight decay.
        batch_size: training batch size.
        seed: base seed (each architecture's is ``(seed, rank)``).
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum.
        lr_schedule: ``cosine`` (to 0 over all epochs, after the warm-up) or ``constant``.
        warmup_epochs: linear warm-up length in epochs.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        loss: ``f(output, target) -> scalar tensor``, a callable or ``"module:name"`` (default
            cross-entropy).
        metrics: ``f(output, target) -> {name: number}``, a callable or ``"module:name"``,
            reported as ``val_<name>`` / ``test_<name>`` (default: the accuracy).
    """

    #: no in-place distillation when retraining (a :class:`~raynas.train.step.TrainSettings` field)
    distill = 0.0

    def __init__(
        self,
        *,
        model_factory: Callable,
        data_factory: Callable,
        archs: Sequence[Mapping[str, Any]],
        search_scores: Sequence[float | None],
        epochs: int,
        optimizer: str,
        lr: float,
        weight_decay: float,
        batch_size: int,
        seed: int,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        grad_clip: float | None = None,
        precision: str = "fp32",
        device: str = "auto",
        loss: Callable | str | None = None,
        metrics: Callable | str | None = None,
    ):
        self.model_factory = model_factory
        self.data_factory = data_factory
        self.archs = [dict(a) for a in archs]
        self.search_scores = list(search_scores)
        self.epochs = epochs
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.momentum = momentum
        self.nesterov = nesterov
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.grad_clip = grad_clip
        self.precision = precision
        self.device = device
        self.loss = loss
        self.metrics = metrics

    @property
    def total_epochs(self) -> int:
        """The epochs the learning-rate schedule spans (``epochs``)."""
        return self.epochs


class _TrialData:
    """A retrain trial's data, built in its process: the training batches (a seeded permutation
    per ``(seed, rank, epoch)``, full batches) and evaluation splits read in order."""

    def __init__(self, setup: RetrainSetup, rank: int, device: torch.device):
        self.spec = as_data_spec(setup.data_factory)
        self.splits = self.spec.splits()
        self.seed = [setup.seed, rank]
        self.device = device
        n = len(self.splits["train"])
        self.sampler = ShardSampler(n, batch_size=min(setup.batch_size, n), seed=self.seed)
        self.train = self.spec.loader(self.splits["train"], self.sampler, device)

    def evaluation(self, split: str) -> CachedBatches:
        """The batches of ``split`` in order (kept after the first pass when they fit)."""
        order = OrderSampler(len(self.splits[split]), batch_size=_EVAL_BATCH, seed=[*self.seed, 0xE7A1])
        return CachedBatches(self.spec.loader(self.splits[split], order, self.device))


def train_fixed(
    setup: RetrainSetup,
    rank: int,
    *,
    report: Callable[[dict, dict], None],
    state: Mapping[str, Any] | None = None,
) -> None:
    """Train architecture ``rank`` of ``setup`` from scratch, calling ``report`` each epoch.

    Args:
        setup: the retrain setup.
        rank: which architecture (0 = the best search score).
        report: ``report(metrics, state)``: ``metrics`` has ``epoch``, ``val_loss``,
            ``val_<metric>`` (default ``val_accuracy``), ``train_loss`` (and ``test_<metric>``
            after the last epoch); ``state`` is the checkpoint to resume from (its ``history`` lists
            every epoch's figures).
        state: a checkpoint a previous call reported, to continue from it.
    """
    device = pick_device(setup.device, key="retrain.device")
    check_precision(device, setup.precision, key="retrain.precision")
    loss_fn = resolve_loss(setup.loss, key="retrain.loss")
    metrics_fn = resolve_metrics(setup.metrics, key="retrain.metrics")
    torch.manual_seed(setup.seed * 1000 + rank)
    model = setup.model_factory()
    apply_fixed_architecture(model, setup.archs[rank])
    model.to(device)
    data = _TrialData(setup, rank, device)
    val = data.evaluation("val")

    def evaluate(batches: CachedBatches) -> dict[str, float]:
        return evaluate_loop(model, batches, criterion=loss_fn, metrics=metrics_fn, metrics_key="retrain.metrics")

    weights = WeightStep(model, setup, device=device, criterion=loss_fn)
    start_epoch, wall, history = _resume(state, model, weights)
    n_params = sum(p.numel() for p in model.parameters())
    for epoch in range(start_epoch, setup.epochs):
        began = time.perf_counter()
        train_loss = _train_epoch(model, weights, data, epoch)
        scores = evaluate(val)
        wall += time.perf_counter() - began
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in scores.items()},
            "params": n_params,
            "rank": rank,
            "wall_s": wall,
        }
        if epoch + 1 == setup.epochs and "test" in data.splits:
            tested = evaluate(data.evaluation("test"))
            metrics.update({f"test_{k}": v for k, v in tested.items() if k != "loss"})
        history.append({k: metrics[k] for k in HISTORY_KEYS if k in metrics})
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": weights.optimizer.state_dict(),
            "scaler": weights.scaler.state_dict() if weights.scaler is not None else None,
            "epoch": epoch + 1,
            "wall_s": wall,
            "history": list(history),
        }
        report(metrics, checkpoint)


def _resume(state: Mapping[str, Any] | None, model: torch.nn.Module, weights: WeightStep) -> tuple[int, float, list]:
    """Load a reported checkpoint into the model and the optimizer; ``(epochs done, wall s, history)``."""
    if state is None:
        return 0, 0.0, []
    model.load_state_dict(state["model"])
    weights.optimizer.load_state_dict(state["optimizer"])
    if weights.scaler is not None and state.get("scaler"):
        weights.scaler.load_state_dict(state["scaler"])
    return int(state["epoch"]), float(state["wall_s"]), list(state.get("history", []))


def _train_epoch(model: torch.nn.Module, weights: WeightStep, data: _TrialData, epoch: int) -> float:
    """One epoch over the trial's training batches (the learning rate set per step); the mean loss."""
    model.train()
    data.sampler.set_epoch(epoch)
    steps = data.sampler.steps
    loss_sum = 0.0
    for s, (x, y) in enumerate(data.train):
        weights.set_lr(epoch + s / steps)
        weights.zero_grad()
        _out, loss = weights.forward_backward(x, y, 1)
        weights.apply()
        loss_sum += float(loss.detach())
    return loss_sum / steps
