"""NNI's ``nni.nas.pytorch.callbacks``: what a :class:`~raynas.nas.trainer.Trainer` calls around each epoch.

A callback is built with the trainer's model, mutator and the trainer itself
(:meth:`Callback.build`), then called with the epoch number (from 0) at the begin and the end of
every epoch. Callbacks always run in the calling process, also when the trainer trains on Ray
replicas (``replicas=2``): before ``on_epoch_end`` the trainer's model, mutator and optimizer
hold the replicas' weights of that epoch, and what a callback changes (an LR scheduler's step on
the optimizer, the weights) reaches the replicas at the next epoch.

Files are written to a temporary name and renamed, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from searchers.errors import ConfigError

__all__ = ["Callback", "LRSchedulerCallback", "ArchitectureCheckpoint", "ModelCheckpoint"]

_logger = logging.getLogger(__name__)


class Callback:
    """Reacts to the begin and the end of epochs; every hook does nothing by default.

    Attributes:
        model: the trainer's model (after :meth:`build`).
        mutator: the trainer's mutator.
        trainer: the trainer calling the callback.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.mutator: nn.Module | None = None
        self.trainer: Any = None

    def build(self, model: nn.Module, mutator: nn.Module, trainer: Any) -> None:
        """Give the callback the model, the mutator and the trainer (the trainer calls this once).

        Args:
            model: the model being trained.
            mutator: the mutator bound to it.
            trainer: the trainer that calls the callback.
        """
        self.model = model
        self.mutator = mutator
        self.trainer = trainer

    def on_epoch_begin(self, epoch: int) -> None:
        """An epoch begins (``epoch`` counts from 0)."""

    def on_epoch_end(self, epoch: int) -> None:
        """An epoch ended, after its validation (``epoch`` counts from 0)."""

    def on_batch_begin(self, epoch: int) -> None:
        """NNI's hook; NNI's trainers never call it (nor do raynas')."""

    def on_batch_end(self, epoch: int) -> None:
        """NNI's hook; NNI's trainers never call it (nor do raynas')."""


class LRSchedulerCallback(Callback):
    """Step a learning-rate scheduler at every epoch end.

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` scheduler of the trainer's optimizer.
        mode: ``"epoch"`` (the only mode, as in NNI).

    Raises:
        ConfigError: ``mode`` is not ``"epoch"``.
    """

    def __init__(self, scheduler: Any, mode: str = "epoch"):
        super().__init__()
        if mode != "epoch":
            raise ConfigError(f"LRSchedulerCallback mode must be 'epoch', got {mode!r}")
        self.scheduler = scheduler
        self.mode = mode

    def on_epoch_end(self, epoch: int) -> None:
        """``scheduler.step()``."""
        self.scheduler.step()


class ArchitectureCheckpoint(Callback):
    """Export the architecture at every epoch end to ``<checkpoint_dir>/epoch_<epoch>.json``
    (``trainer.export``; the folder is made when the first file is written).

    Args:
        checkpoint_dir: the folder to write to.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike):
        super().__init__()
        self.checkpoint_dir = os.fspath(checkpoint_dir)

    def on_epoch_end(self, epoch: int) -> None:
        """Write ``epoch_<epoch>.json``."""
        dest = os.path.join(self.checkpoint_dir, f"epoch_{epoch}.json")
        _logger.info("Saving architecture to %s", dest)
        self.trainer.export(dest)


class ModelCheckpoint(Callback):
    """Save the model's ``state_dict`` at every epoch end to
    ``<checkpoint_dir>/epoch_<epoch>.pth.tar`` (the module inside an ``nn.DataParallel``).

    Args:
        checkpoint_dir: the folder to write to (made when the first file is written).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike):
        super().__init__()
        self.checkpoint_dir = os.fspath(checkpoint_dir)

    def on_epoch_end(self, epoch: int) -> None:
        """Write ``epoch_<epoch>.pth.tar``."""
        from raynas._io import write_torch_atomic

        model = self.model.module if isinstance(self.model, nn.DataParallel) else self.model
        dest = os.path.join(self.checkpoint_dir, f"epoch_{epoch}.pth.tar")
        _logger.info("Saving model to %s", dest)
        write_torch_atomic(
            dest, {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
        )
