"""``DartsTrainer``: NNI v1.9's DARTS search loop (``nni.nas.pytorch.darts.DartsTrainer``).

The training split is cut as NNI cuts it: its first half trains the weights, its second half the
architecture (each through a ``SubsetRandomSampler``), and every step is an architecture step
(:meth:`DartsMutator.arch_step <raynas.nas.darts.DartsMutator.arch_step>`, the one
implementation ``supernet.algorithm: darts`` uses too) followed by a weight step with the
gradient norm clipped to 5. The architecture optimizer is NNI's: Adam with ``arc_learning_rate``,
betas ``(0.5, 0.999)`` and weight decay 1e-3 over the alphas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from raynas.nas.callbacks import Callback
from raynas.nas.darts.mutator import DartsMutator
from raynas.nas.replicable import TrainerOptions
from raynas.nas.trainer import Trainer
from raynas.nas.utils import AverageMeterGroup, to_device
from searchers.errors import ConfigError

__all__ = ["DartsTrainer"]

_logger = logging.getLogger(__name__)


class DartsTrainer(Trainer):
    """DARTS: weights and alphas trained in alternation on the two halves of the training data.

    The arguments are NNI's, with NNI's defaults; ``**options`` are raynas' extras
    (:class:`~raynas.nas.replicable.TrainerOptions`: ``replicas=``, ``address=``, ...).

    Args:
        model: the model with mutables.
        loss: ``loss(logits, targets)``.
        metrics: ``metrics(logits, targets) -> {name: value}``.
        optimizer: the weights' optimizer.
        num_epochs: epochs to train.
        dataset_train: the training data, split in halves (weights / architecture).
        dataset_valid: the test data of :meth:`validate_one_epoch`.
        mutator: a :class:`~raynas.nas.darts.DartsMutator` (or subclass) bound to ``model``;
            ``None``: ``DartsMutator(model)``.
        batch_size: the batch size (per replica).
        workers: DataLoader workers.
        device: the device (``None``: CUDA when available).
        log_frequency: log every this many steps (``None``: never).
        callbacks: :class:`~raynas.nas.callbacks.Callback` objects.
        arc_learning_rate: Adam learning rate of the alphas.
        unrolled: ``True``: second-order (unrolled) DARTS; ``False``: first order.

    Attributes:
        ctrl_optim: the alphas' Adam optimizer (the mutator's ``arch_optimizer``).

    Raises:
        ConfigError: ``mutator`` is not a ``DartsMutator``, or a bad setting.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[..., torch.Tensor],
        metrics: Callable[..., Mapping[str, Any]],
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset_train: Any,
        dataset_valid: Any,
        mutator: DartsMutator | None = None,
        batch_size: int = 64,
        workers: int = 4,
        device: torch.device | str | None = None,
        log_frequency: int | None = None,
        callbacks: list[Callback] | None = None,
        arc_learning_rate: float = 3.0e-4,
        unrolled: bool = False,
        **options: Any,
    ):
        TrainerOptions.from_kwargs(type(self).__name__, options)  # checked before the mutator is built
        if mutator is not None and not isinstance(mutator, DartsMutator):
            raise ConfigError(f"DartsTrainer mutator must be a DartsMutator (or None), got {type(mutator).__name__}")
        if not isinstance(unrolled, bool):
            raise ConfigError(f"DartsTrainer unrolled must be True or False, got {unrolled!r}")
        super().__init__(
            model,
            mutator if mutator is not None else DartsMutator(model),
            loss,
            metrics,
            optimizer,
            num_epochs,
            dataset_train,
            dataset_valid,
            batch_size,
            workers,
            device,
            log_frequency,
            callbacks,
            **options,
        )
        self.mutator.configure_arch_optimizer(lr=arc_learning_rate, betas=(0.5, 0.999), weight_decay=1.0e-3)
        self.mutator.order = 2 if unrolled else 1
        self.unrolled = unrolled
        self.build_loaders()

    @property
    def ctrl_optim(self) -> torch.optim.Optimizer:
        """The alphas' optimizer (NNI's attribute)."""
        return self.mutator.arch_optimizer

    def build_loaders(self) -> None:
        """NNI's loaders: the first half of ``dataset_train`` for the weights, the second half for
        the architecture (both shuffled), ``dataset_valid`` in order for testing."""
        n_train = len(self.dataset_train)
        split = n_train // 2
        indices = list(range(n_train))
        kw = {"batch_size": self.batch_size, "workers": self.workers}
        self.train_loader = self.subset_loader(self.dataset_train, indices[:split], shuffle=True, **kw)
        self.valid_loader = self.subset_loader(self.dataset_train, indices[split:], shuffle=True, **kw)
        if self._replica is None:
            self.test_loader = self.subset_loader(self.dataset_valid, None, shuffle=False, **kw)

    def train_one_epoch(self, epoch: int) -> AverageMeterGroup:
        """One pass over the weight half, an architecture step before every weight step."""
        self.model.train()
        self.mutator.train()
        meters = AverageMeterGroup()
        reduce = self.reduce_mean if self._replica is not None else None
        total = len(self.train_loader)
        for step, ((trn_x, trn_y), (val_x, val_y)) in enumerate(zip(self.train_loader, self.valid_loader)):
            trn_x, trn_y = to_device(trn_x, self.device), to_device(trn_y, self.device)
            val_x, val_y = to_device(val_x, self.device), to_device(val_y, self.device)
            # phase 1: the architecture step (its gradients averaged across replicas)
            self.mutator.arch_step(
                (val_x, val_y), train_batch=(trn_x, trn_y), criterion=self.loss, reduce=reduce, optimizer=self.optimizer
            )
            # phase 2: the weights' step
            self.optimizer.zero_grad()
            logits, loss = self._logits_and_loss(trn_x, trn_y)
            self.backward_weights(loss)
            nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
            self.optimizer.step()
            self.step_done()
            metrics = dict(self.metrics(logits, trn_y))
            metrics["loss"] = loss.item()
            meters.update(metrics)
            self.log_step("Epoch", epoch, step + 1, total, meters)
        return meters

    def validate_one_epoch(self, epoch: int) -> AverageMeterGroup:
        """The softmax-weighted supernet on ``dataset_valid`` (eval mode, no gradients)."""
        self.model.eval()
        self.mutator.eval()
        meters = AverageMeterGroup()
        with torch.no_grad():
            self.mutator.reset()
            for step, (x, y) in enumerate(self.test_loader):
                x, y = to_device(x, self.device), to_device(y, self.device)
                logits = self.model(x)
                meters.update(self.metrics(logits, y))
                self.log_step("Epoch", epoch, step + 1, len(self.test_loader), meters)
        return meters

    def _logits_and_loss(self, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.mutator.weight_reset()  # the weights' path: the alphas' softmax, no gradient to them
        logits = self.model(x)
        loss = self.loss(logits, y)
        self._write_graph_status()
        return logits, loss
