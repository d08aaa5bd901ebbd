"""``SPOSSupernetTrainer``: NNI v1.9's SPOS supernet training loop (``nni.nas.pytorch.spos``).

Every step draws a single path (``mutator.reset()``, by default NNI's
:class:`~raynas.nas.spos.SPOSSupernetTrainingMutator`) and trains it on one batch of the user's
``train_loader``. The supernet it leaves is what :class:`searchers.SPOSEvolution` searches on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from raynas.nas.callbacks import Callback
from raynas.nas.replicable import TrainerOptions
from raynas.nas.spos.mutator import SPOSSupernetTrainingMutator
from raynas.nas.trainer import Trainer
from raynas.nas.utils import AverageMeterGroup, to_device

__all__ = ["SPOSSupernetTrainer"]

_logger = logging.getLogger(__name__)


def _length(loader: Iterable) -> Any:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return "?"


class SPOSSupernetTrainer(Trainer):
    """Trains a supernet on single random paths (NNI's arguments and defaults; ``**options`` are
    raynas' extras, :class:`~raynas.nas.replicable.TrainerOptions`).

    Args:
        model: the model with mutables.
        loss: ``loss(logits, targets)``.
        metrics: ``metrics(logits, targets) -> {name: value}``.
        optimizer: the weights' optimizer.
        num_epochs: epochs to train.
        train_loader: the training batches ``(x, y)``, one epoch per pass (a ``DataLoader`` or any
            iterable; with replicas each takes its shard of it).
        valid_loader: the validation batches.
        mutator: a mutator bound to ``model``; ``None``: ``SPOSSupernetTrainingMutator(model)``.
        batch_size: kept for NNI's signature (the loaders batch).
        workers: kept for NNI's signature (not used).
        device: the device (``None``: CUDA when available); batches are moved to it.
        log_frequency: log every this many steps (``None``: never).
        callbacks: :class:`~raynas.nas.callbacks.Callback` objects.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[..., torch.Tensor],
        metrics: Callable[..., Mapping[str, Any]],
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        train_loader: Iterable,
        valid_loader: Iterable,
        mutator: nn.Module | None = None,
        batch_size: int = 64,
        workers: int = 4,
        device: torch.device | str | None = None,
        log_frequency: int | None = None,
        callbacks: list[Callback] | None = None,
        **options: Any,
    ):
        TrainerOptions.from_kwargs(type(self).__name__, options)  # checked before the mutator is built
        super().__init__(
            model,
            mutator if mutator is not None else SPOSSupernetTrainingMutator(model),
            loss,
            metrics,
            optimizer,
            num_epochs,
            None,
            None,
            batch_size,
            workers,
            device,
            log_frequency,
            callbacks,
            **options,
        )
        self.user_loaders = (train_loader, valid_loader)
        self.build_loaders()

    def build_loaders(self) -> None:
        """The user's loaders (on a replica: its shard of the training loader)."""
        self.train_loader = self.shard_loader(self.user_loaders[0])
        self.valid_loader = self.user_loaders[1]

    def train_one_epoch(self, epoch: int) -> AverageMeterGroup:
        """One pass over ``train_loader``, a new path every step."""
        self.model.train()
        meters = AverageMeterGroup()
        total = _length(self.train_loader)
        for step, (x, y) in enumerate(self.train_loader):
            x, y = to_device(x, self.device), to_device(y, self.device)
            self.optimizer.zero_grad()
            self.mutator.reset()
            logits = self.model(x)
            loss = self.loss(logits, y)
            self.backward_weights(loss)
            self.optimizer.step()
            self.step_done()
            metrics = dict(self.metrics(logits, y))
            metrics["loss"] = loss.item()
            meters.update(metrics)
            self.log_step("Epoch", epoch, step + 1, total, meters)
        return meters

    def validate_one_epoch(self, epoch: int) -> AverageMeterGroup:
        """One pass over ``valid_loader`` in eval mode, a new path every batch."""
        self.model.eval()
        meters = AverageMeterGroup()
        total = _length(self.valid_loader)
        with torch.no_grad():
            for step, (x, y) in enumerate(self.valid_loader):
                x, y = to_device(x, self.device), to_device(y, self.device)
                self.mutator.reset()
                logits = self.model(x)
                loss = self.loss(logits, y)
                metrics = dict(self.metrics(logits, y))
                metrics["loss"] = loss.item()
                meters.update(metrics)
                if self.log_frequency is not None and step % self.log_frequency == 0:
                    _logger.info(
                        "Epoch [%s/%s] Validation Step [%s/%s]  %s", epoch + 1, self.num_epochs, step + 1, total, meters
                    )
        return meters
