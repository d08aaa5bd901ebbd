"""``EnasTrainer``: NNI v1.9's ENAS search loop (``nni.nas.pytorch.enas.EnasTrainer``).

The last tenth of the training split trains the controller, the rest the weights (both
shuffled, cycled without end). Each epoch is ``child_steps`` weight steps, each on a path the
controller samples (gradient norm clipped to 5, an auxiliary head's loss weighted by
``aux_weight``), then ``mutator_steps`` controller steps, each aggregating
``mutator_steps_aggregate`` sampled paths scored by ``reward_function`` on a controller batch
(model in eval mode), with NNI's moving-average baseline and REINFORCE loss
(:meth:`EnasMutator.reinforce_loss <raynas.nas.enas.EnasMutator.reinforce_loss>`).

On replicas every replica samples the same paths (the same seeded RNG), trains on its shard,
and the rewards and the controller's gradients are averaged, so the controller and the baseline
stay the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from itertools import cycle
from typing import Any

import torch
from torch import nn

from raynas.nas.callbacks import Callback
from raynas.nas.enas.controller import EnasConfigError
from raynas.nas.enas.mutator import EnasMutator
from raynas.nas.replicable import TrainerOptions
from raynas.nas.trainer import Trainer
from raynas.nas.utils import AverageMeterGroup, to_device

__all__ = ["EnasTrainer"]

_logger = logging.getLogger(__name__)


def _count(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EnasConfigError(f"EnasTrainer {name} must be an integer >= {minimum}, got {value!r}")
    return value


class EnasTrainer(Trainer):
    """ENAS: weights trained on controller-sampled paths, the controller by REINFORCE.

    The arguments are NNI's, with NNI's defaults; ``**options`` are raynas' extras
    (:class:`~raynas.nas.replicable.TrainerOptions`).

    Args:
        model: the model with mutables.
        loss: ``loss(logits, targets)``.
        metrics: ``metrics(logits, targets) -> {name: value}``.
        reward_function: ``reward(logits, targets) -> number`` for the controller.
        optimizer: the weights' optimizer.
        num_epochs: epochs to train.
        dataset_train: the training data (nine tenths weights, one tenth controller).
        dataset_valid: the test data of :meth:`validate_one_epoch`.
        mutator: an :class:`~raynas.nas.enas.EnasMutator` bound to ``model``; ``None``:
            ``EnasMutator(model)``.
        batch_size: the batch size (per replica).
        workers: DataLoader workers.
        device: the device (``None``: CUDA when available).
        log_frequency: log every this many steps (``None``: never).
        callbacks: :class:`~raynas.nas.callbacks.Callback` objects.
        entropy_weight: weight of the sample's entropy added to the reward.
        skip_weight: weight of the skip penalty added to the controller's loss.
        baseline_decay: ``baseline = baseline_decay * baseline + (1 - baseline_decay) * reward``.
        child_steps: weight steps per epoch.
        mutator_lr: Adam learning rate of the controller.
        mutator_steps_aggregate: sampled paths aggregated into one controller step.
        mutator_steps: controller steps per epoch.
        aux_weight: weight of an auxiliary head's loss (a model returning ``(logits, aux)``).
        test_arc_per_epoch: paths sampled for testing in :meth:`validate_one_epoch`.

    Attributes:
        mutator_optim: the controller's Adam optimizer.
        baseline: the moving-average reward (starts at 0, as NNI's).

    Raises:
        EnasConfigError: ``mutator`` is not an ``EnasMutator``, or a step count is not an
            integer >= 0.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[..., torch.Tensor],
        metrics: Callable[..., Mapping[str, Any]],
        reward_function: Callable[..., Any],
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset_train: Any,
        dataset_valid: Any,
        mutator: EnasMutator | None = None,
        batch_size: int = 64,
        workers: int = 4,
        device: torch.device | str | None = None,
        log_frequency: int | None = None,
        callbacks: list[Callback] | None = None,
        entropy_weight: float = 0.0001,
        skip_weight: float = 0.8,
        baseline_decay: float = 0.999,
        child_steps: int = 500,
        mutator_lr: float = 0.00035,
        mutator_steps_aggregate: int = 20,
        mutator_steps: int = 50,
        aux_weight: float = 0.4,
        test_arc_per_epoch: int = 1,
        **options: Any,
    ):
        TrainerOptions.from_kwargs(type(self).__name__, options)  # checked before the mutator is built
        if mutator is not None and not isinstance(mutator, EnasMutator):
            raise EnasConfigError(f"EnasTrainer mutator must be an EnasMutator (or None), got {type(mutator).__name__}")
        self.child_steps = _count("child_steps", child_steps)
        self.mutator_steps = _count("mutator_steps", mutator_steps)
        self.mutator_steps_aggregate = _count("mutator_steps_aggregate", mutator_steps_aggregate, 1)
        self.test_arc_per_epoch = _count("test_arc_per_epoch", test_arc_per_epoch)
        super().__init__(
            model,
            mutator if mutator is not None else EnasMutator(model),
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
        self.reward_function = reward_function
        self.mutator_optim = torch.optim.Adam(self.mutator.parameters(), lr=mutator_lr)
        self.entropy_weight = entropy_weight
        self.skip_weight = skip_weight
        self.baseline_decay = baseline_decay
        self.baseline = 0.0
        self.aux_weight = aux_weight
        self.build_loaders()

    def build_loaders(self) -> None:
        """NNI's loaders: the last tenth of ``dataset_train`` for the controller, the rest for the
        weights (both shuffled and cycled), ``dataset_valid`` in order for testing."""
        n_train = len(self.dataset_train)
        split = n_train // 10
        if split < 1:
            raise EnasConfigError(
                f"EnasTrainer needs at least 10 items in dataset_train (a tenth trains the controller), got {n_train}"
            )
        indices = list(range(n_train))
        kw = {"batch_size": self.batch_size, "workers": self.workers}
        self.train_loader = cycle(self.subset_loader(self.dataset_train, indices[:-split], shuffle=True, **kw))
        self.valid_loader = cycle(self.subset_loader(self.dataset_train, indices[-split:], shuffle=True, **kw))
        if self._replica is None:
            self.test_loader = self.subset_loader(self.dataset_valid, None, shuffle=False, **kw)

    def init_dataloader(self) -> None:
        """NNI's name of :meth:`build_loaders`."""
        self.build_loaders()

    def train_one_epoch(self, epoch: int) -> AverageMeterGroup:
        """``child_steps`` weight steps, then ``mutator_steps`` controller steps."""
        self._train_weights(epoch)
        return self._train_controller(epoch)

    def _train_weights(self, epoch: int) -> AverageMeterGroup:
        self.model.train()
        self.mutator.eval()
        meters = AverageMeterGroup()
        for step in range(1, self.child_steps + 1):
            x, y = next(self.train_loader)
            x, y = to_device(x, self.device), to_device(y, self.device)
            self.optimizer.zero_grad()
            with torch.no_grad():
                self.mutator.reset()
            self._write_graph_status()
            logits = self.model(x)
            aux_loss: Any = 0.0
            if isinstance(logits, tuple):
                logits, aux_logits = logits
                aux_loss = self.loss(aux_logits, y)
            metrics = dict(self.metrics(logits, y))
            loss = self.loss(logits, y) + self.aux_weight * aux_loss
            self.backward_weights(loss)
            nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
            self.optimizer.step()
            self.step_done()
            metrics["loss"] = loss.item()
            meters.update(metrics)
            if self.log_frequency is not None and step % self.log_frequency == 0:
                _logger.info(
                    "Model Epoch [%d/%d] Step [%d/%d]  %s", epoch + 1, self.num_epochs, step, self.child_steps, meters
                )
        return meters

    def _train_controller(self, epoch: int) -> AverageMeterGroup:
        self.model.eval()
        self.mutator.train()
        meters = AverageMeterGroup()
        aggregate = self.mutator_steps_aggregate
        for mutator_step in range(1, self.mutator_steps + 1):
            self.mutator_optim.zero_grad()
            for step in range(1, aggregate + 1):
                x, y = next(self.valid_loader)
                x, y = to_device(x, self.device), to_device(y, self.device)
                self.mutator.reset()
                with torch.no_grad():
                    logits = self.model(x)
                self._write_graph_status()
                metrics = dict(self.metrics(logits, y))
                reward = self.reward_function(logits, y)
                if self.entropy_weight:
                    reward += self.entropy_weight * self.mutator.sample_entropy.item()
                reward = self.mean_value(reward)  # every replica scored the same path on its own batch
                self.baseline = self.baseline * self.baseline_decay + reward * (1 - self.baseline_decay)
                loss = self.mutator.reinforce_loss(reward, self.baseline, self.skip_weight)
                metrics["reward"] = reward
                metrics["loss"] = loss.item()
                metrics["ent"] = self.mutator.sample_entropy.item()
                metrics["log_prob"] = self.mutator.sample_log_prob.item()
                metrics["baseline"] = self.baseline
                skip = self.mutator.sample_skip_penalty  # a tensor with a graph (macro skips), else a number
                metrics["skip"] = float(skip.detach()) if isinstance(skip, torch.Tensor) else float(skip)
                loss = loss / aggregate
                loss.backward()
                meters.update(metrics)
                cur_step = step + (mutator_step - 1) * aggregate
                if self.log_frequency is not None and cur_step % self.log_frequency == 0:
                    _logger.info(
                        "RL Epoch [%d/%d] Step [%d/%d] [%d/%d]  %s",
                        epoch + 1,
                        self.num_epochs,
                        mutator_step,
                        self.mutator_steps,
                        step,
                        aggregate,
                        meters,
                    )
            self.reduce_mean([p.grad for p in self.mutator.parameters() if p.grad is not None])
            nn.utils.clip_grad_norm_(self.mutator.parameters(), 5.0)
            self.mutator_optim.step()
            self.step_done()
        return meters

    def validate_one_epoch(self, epoch: int) -> AverageMeterGroup | None:
        """Test ``test_arc_per_epoch`` sampled paths on ``dataset_valid`` (a path per batch, as NNI)."""
        meters = None
        with torch.no_grad():
            for arc_id in range(self.test_arc_per_epoch):
                meters = AverageMeterGroup()
                for x, y in self.test_loader:
                    x, y = to_device(x, self.device), to_device(y, self.device)
                    self.mutator.reset()
                    logits = self.model(x)
                    if isinstance(logits, tuple):
                        logits, _ = logits
                    metrics = dict(self.metrics(logits, y))
                    metrics["loss"] = self.loss(logits, y).item()
                    meters.update(metrics)
                _logger.info(
                    "Test Epoch [%d/%d] Arc [%d/%d] Summary  %s",
                    epoch + 1,
                    self.num_epochs,
                    arc_id + 1,
                    self.test_arc_per_epoch,
                    meters.summary(),
                )
        return meters

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "mutator_optim": self.mutator_optim}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "baseline": float(self.baseline)}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        self.baseline = float(state.get("baseline", self.baseline))
