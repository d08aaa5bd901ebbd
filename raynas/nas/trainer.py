"""NNI's ``nni.nas.pytorch.trainer``: :class:`Trainer`, the base of the epoch-based one-shot trainers.

A trainer script ported from NNI changes only its imports::

    from raynas.nas.darts import DartsTrainer            # was: from nni.nas.pytorch.darts import ...
    trainer = DartsTrainer(model, loss=..., metrics=..., optimizer=..., num_epochs=...,
                           dataset_train=..., dataset_valid=..., callbacks=[...])
    trainer.train()
    trainer.export("final_architecture.json")

and trains the same way in the calling process. Adding ``replicas=2`` (and optionally ``address=``
and the placement keywords of :class:`~raynas.nas.replicable.TrainerOptions`) trains the supernet
and the architecture parameters data-parallel on Ray actors (:mod:`raynas.nas.replicable`).
"""

from __future__ import annotations

import abc
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from raynas.nas.base_trainer import BaseTrainer
from raynas.nas.callbacks import Callback
from raynas.nas.replicable import ReplicableTrainer
from raynas.nas.utils import AverageMeterGroup
from searchers.errors import ConfigError, ConfigTypeError

__all__ = ["Trainer", "TorchTensorEncoder"]

_logger = logging.getLogger(__name__)


class TorchTensorEncoder(json.JSONEncoder):
    """JSON for tensors: their ``tolist()`` (NNI's encoder; it warns about 0/1 lists that are not bool)."""

    def default(self, o: Any) -> Any:  # noqa: D102 - json.JSONEncoder's hook
        if isinstance(o, torch.Tensor):
            values = o.tolist()
            flat = values if isinstance(values, list) else [values]
            if o.dtype != torch.bool and flat and all(v in (0, 1) for v in flat if not isinstance(v, list)):
                _logger.warning(
                    "Every element in %s is either 0 or 1. You might consider convert it into bool.", values
                )
            return values
        return super().default(o)


def export_to(file: str | os.PathLike, architecture: Any) -> None:
    """Write an exported architecture as NNI does (indented, sorted keys, tensors as lists), atomically."""
    from raynas._io import write_text_atomic

    write_text_atomic(file, json.dumps(architecture, indent=2, sort_keys=True, cls=TorchTensorEncoder))


def default_device(device: torch.device | str | None) -> torch.device:
    """NNI's default: CUDA when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Trainer(ReplicableTrainer, BaseTrainer):
    """An epoch-based one-shot trainer (NNI v1.9's ``Trainer``): subclasses implement
    :meth:`train_one_epoch` and :meth:`validate_one_epoch`.

    The positional arguments are NNI's, with NNI's meaning.

    Args:
        model: the model with mutables.
        mutator: a mutator bound to ``model``.
        loss: ``loss(logits, targets) -> tensor`` (moved to the device when it is a module).
        metrics: ``metrics(logits, targets) -> {name: value}``.
        optimizer: the optimizer of the model's weights.
        num_epochs: epochs to train.
        dataset_train: the training dataset.
        dataset_valid: the validation / test dataset.
        batch_size: the batch size (per replica with ``replicas > 1``).
        workers: DataLoader worker processes.
        device: ``torch.device``; ``None``: CUDA when available, else the CPU.
        log_frequency: log the meters every this many steps (``None``: never).
        callbacks: :class:`~raynas.nas.callbacks.Callback` objects.
        **options: raynas' extras, :class:`~raynas.nas.replicable.TrainerOptions` (``replicas=``,
            ``address=``, ``cpus_per_replica=``, ...).

    Raises:
        ConfigError: an unknown or bad extra keyword, or ``num_epochs`` is not an integer >= 0.
        TypeError: a callback is not a :class:`~raynas.nas.callbacks.Callback`.
    """

    def __init__(
        self,
        model: nn.Module,
        mutator: nn.Module,
        loss: Callable[..., torch.Tensor],
        metrics: Callable[..., Mapping[str, Any]],
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset_train: Any,
        dataset_valid: Any,
        batch_size: int,
        workers: int,
        device: torch.device | str | None,
        log_frequency: int | None,
        callbacks: list[Callback] | None,
        **options: Any,
    ):
        self.setup_replicas(type(self).__name__, options)
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 0:
            raise ConfigError(f"{type(self).__name__} num_epochs must be an integer >= 0, got {num_epochs!r}")
        self.device = default_device(device)
        self.model = model
        self.mutator = mutator
        self.loss = loss
        self.metrics = metrics
        self.optimizer = optimizer
        self.model.to(self.device)
        self.mutator.to(self.device)
        if isinstance(self.loss, nn.Module):
            self.loss.to(self.device)
        self.num_epochs = num_epochs
        self.dataset_train = dataset_train
        self.dataset_valid = dataset_valid
        self.batch_size = batch_size
        self.workers = workers
        self.log_frequency = log_frequency
        self.log_dir = os.path.join("logs", str(time.time()))  # made by enable_visualization only
        self.status_writer = None
        self.epoch = 0  # epochs finished (raynas: resume_from continues from it)
        self.validate_each_epoch = True
        self.callbacks = list(callbacks) if callbacks is not None else []
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise ConfigTypeError(
                    f"callbacks must be raynas.nas.callbacks.Callback instances, got {type(callback).__name__}"
                )
            callback.build(self.model, self.mutator, self)

    @abc.abstractmethod
    def train_one_epoch(self, epoch: int) -> AverageMeterGroup | None:
        """Train one epoch (``epoch`` counts from 0); raynas' trainers return their meters."""

    @abc.abstractmethod
    def validate_one_epoch(self, epoch: int) -> AverageMeterGroup | None:
        """Validate once (``epoch`` counts from 0; -1 from :meth:`validate`)."""

    # -- NNI's public methods -------------------------------------------------------------------

    def train(self, validate: bool = True) -> None:
        """Train ``num_epochs`` epochs, calling the callbacks at the begin and the end of each.

        Args:
            validate: run :meth:`validate_one_epoch` after every epoch.
        """
        self.validate_each_epoch = validate
        self.run_units()

    def validate(self) -> AverageMeterGroup | None:
        """Validate once (``validate_one_epoch(-1)``)."""
        return self.validate_one_epoch(-1)

    def export(self, file: str | os.PathLike) -> None:
        """Write ``mutator.export()`` to ``file`` as JSON (indented, sorted keys, atomically)."""
        export_to(file, self.mutator.export())

    def enable_visualization(self) -> None:
        """Write the search space to ``logs/<timestamp>/graph.json`` and, at every step, the
        decision in force (``mutator.status()``) as a line of ``logs/<timestamp>/log``."""
        from raynas.nas.space import generate_search_space

        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, "graph.json"), "w") as f:
            json.dump(generate_search_space(self.model), f)
        self.status_writer = open(os.path.join(self.log_dir, "log"), "w")  # noqa: SIM115 - kept open, as NNI
        self.visualization_enabled = True

    def _write_graph_status(self) -> None:
        if not getattr(self, "visualization_enabled", False):
            return
        line = json.dumps(self.mutator.status())
        replica = getattr(self, "_replica", None)
        if replica is not None:  # a Ray replica (no writer): the calling process writes rank 0's lines
            replica.status_line(line)
        elif getattr(self, "status_writer", None) is not None:
            print(line, file=self.status_writer, flush=True)

    # -- the units of ReplicableTrainer: epochs -------------------------------------------------

    def units(self) -> list[int]:
        return list(range(self.epoch, self.num_epochs))

    def begin_unit(self, unit: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(unit)
        _logger.info("Epoch %d Training", unit + 1)

    def run_unit(self, unit: int) -> AverageMeterGroup | None:
        return self.train_one_epoch(unit)

    def end_unit(self, unit: int, metrics: Mapping[str, float]) -> None:
        if self.validate_each_epoch:
            _logger.info("Epoch %d Validating", unit + 1)
            self.validate_one_epoch(unit)
        for callback in self.callbacks:
            callback.on_epoch_end(unit)
        self.epoch = unit + 1
        if self.options.checkpoint_dir is not None:
            self.checkpoint()

    def stateful(self) -> dict[str, Any]:
        return {"model": self.model, "mutator": self.mutator, "optimizer": self.optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state.get("epoch", self.epoch))

    def progress(self) -> int:
        return self.epoch

    def log_step(self, phase: str, epoch: int, step: int, total: int, meters: AverageMeterGroup) -> None:
        """Log ``meters`` every ``log_frequency`` steps (``step`` counts from 1)."""
        if self.log_frequency is not None and (step - 1) % self.log_frequency == 0:
            logging.getLogger(type(self).__module__).info(  # the trainer's own module logs it, as in NNI
                "%s [%s/%s] Step [%s/%s]  %s", phase, epoch + 1, self.num_epochs, step, total, meters
            )
