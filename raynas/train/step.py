"""The weights' side of a training step: learning rate, optimizer, autocast, loss, clipping.

One implementation for supernet training and retraining: both hand their settings (a
:class:`~raynas.train.config.SupernetConfig`, a :class:`raynas.retrain.RetrainSetup`: anything
with the :class:`TrainSettings` attributes) to :class:`WeightStep`, which builds the optimizer
(:func:`build_optimizer`) and sets the learning rate. The learning rate is a pure function of
training progress (:func:`lr_at`: linear warm-up, then cosine to 0 or constant), set before each
step, so resuming from a checkpoint continues the schedule exactly. ``bf16`` / ``fp16`` run the
forward pass under autocast (:func:`autocast`); ``fp16`` also scales the loss (a CUDA
``GradScaler``). With in-place distillation (``supernet.distill``, the sandwich rule) the largest
path is trained first on the plain loss and its softmax teaches the sampled paths
(:meth:`WeightStep.teacher`, :meth:`WeightStep.forward_backward`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["TrainSettings", "WeightStep", "lr_at", "build_optimizer", "autocast"]


class TrainSettings(Protocol):
    """What :class:`WeightStep` and :func:`lr_at` read from a phase's settings (the meaning of
    each is that of the :class:`~raynas.train.config.SupernetConfig` field of the same name)."""

    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    lr_schedule: str
    warmup_epochs: float
    grad_clip: float | None
    precision: str
    distill: float

    @property
    def total_epochs(self) -> int:
        """Epochs the schedule spans."""


def lr_at(config: TrainSettings, epoch_progress: float) -> float:
    """The learning rate after ``epoch_progress`` epochs (fractional) of training: linear warm-up
    over ``warmup_epochs``, then ``lr_schedule`` (cosine to 0 at ``total_epochs``, or constant)."""
    warm = config.warmup_epochs
    if warm > 0 and epoch_progress < warm:
        return config.lr * (epoch_progress + 1e-8) / warm
    if config.lr_schedule == "constant" or config.total_epochs <= warm:
        return config.lr
    t = min(max((epoch_progress - warm) / (config.total_epochs - warm), 0.0), 1.0)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(
    params: Any,
    *,
    optimizer: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, weight decay) or Adam: the one optimizer builder of supernet training and retraining.

    Args:
        params: the parameters to optimise.
        optimizer: ``sgd`` or ``adam``.
        lr: the (initial) learning rate.
        weight_decay: L2 weight decay.
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum (only with ``momentum > 0``).
    """
    if optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
        )
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a precision (``fp32``: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class WeightStep:
    """Forward, backward and the optimizer step of the supernet's weights (no sampling, no sync).

    Args:
        model: the model (on ``device``).
        config: the :class:`TrainSettings` (``optimizer``, ``lr`` and its schedule, ``precision``,
            ``grad_clip``, ``distill``).
        device: the training device.
        criterion: the loss ``f(output, target)``.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainSettings,
        *,
        device: torch.device,
        criterion: Callable[[Any, torch.Tensor], torch.Tensor],
    ):
        self.model = model
        self.config = config
        self.device = device
        self.criterion = criterion
        self.optimizer = build_optimizer(
            model.parameters(),
            optimizer=config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
            nesterov=config.nesterov,
        )
        self.scaler: Any = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.params = [p for p in model.parameters() if p.requires_grad]

    def set_lr(self, epoch_progress: float) -> float:
        """Set (and return) the learning rate for ``epoch_progress`` epochs of training."""
        lr = lr_at(self.config, epoch_progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def zero_grad(self) -> None:
        """Drop the gradients (``None``: a candidate off the path gets no update at all)."""
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled under ``fp16``."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def teacher(self, x: Any, y: torch.Tensor) -> torch.Tensor:
        """Train the path in force (the largest) on the plain loss; its detached softmax.

        Raises:
            ValueError: the model's output is not ``(batch, classes)`` logits.
        """
        with autocast(self.device, self.config.precision):
            out = self.model(x)
            loss = self.criterion(out, y)
        if out.dim() != 2:
            raise ValueError(
                f"supernet.distill needs the model to output (batch, classes) logits, got shape {tuple(out.shape)}"
            )
        self.backward(loss)
        return torch.softmax(out.detach().float(), dim=-1)

    def forward_backward(
        self, x: Any, y: torch.Tensor, paths: int, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward on the path in force; ``(output, plain loss)``.

        The loss mixes in the distillation term when ``teacher`` is given and is divided by
        ``paths`` when a step accumulates several paths (fair sampling).
        """
        with autocast(self.device, self.config.precision):
            out = self.model(x)
            loss = self.criterion(out, y)
            total = loss
            if teacher is not None:
                w = self.config.distill
                kd = nn.functional.kl_div(torch.log_softmax(out.float(), dim=-1), teacher, reduction="batchmean")
                total = (1.0 - w) * loss + w * kd
        self.backward(total / paths if paths > 1 else total)
        return out, loss

    def apply(self) -> None:
        """Clip the gradients (``grad_clip``) and step the optimizer (through the scaler under ``fp16``)."""
        clip = self.config.grad_clip
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if clip is not None:
                nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], clip)
            self.optimizer.step()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many of the batch's predictions are right (0 for outputs that are not logits)."""
        with torch.no_grad():
            return (out.argmax(dim=-1) == y).sum() if out.dim() == 2 else torch.zeros((), device=self.device)
