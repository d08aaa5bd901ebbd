"""``ProxylessNasTrainer``: NNI v1.9's ProxylessNAS search loop (``nni.nas.pytorch.proxylessnas``).

``warmup_epochs`` warm-up epochs train the weights on sampled single paths (architecture
weights frozen, cosine learning rate from 0.05), then ``n_epochs`` epochs do the same with the
cosine schedule from ``init_lr`` and, from the second epoch on, ``grad_update_steps``
architecture steps after every ``grad_update_arch_param_every``-th batch: a batch of the
validation loader (at the training batch size) through the binary gates in ``binary_mode``, the
gates' gradient turned into the architecture weights' (:meth:`MixedOp.set_arch_param_grad
<raynas.nas.proxylessnas.mutator.MixedOp.set_arch_param_grad>`), an Adam step. After every epoch
it validates the most probable ops (every ``arch_valid_frequency`` epochs after the warm-up),
writes ``ckpt_path`` and exports the architecture to ``arch_path`` (each when given).

On replicas each replica trains on its shard of the loaders; the weights' and the gates'
gradients are averaged, so the architecture weights stay the same everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raynas.nas.base_trainer import BaseTrainer
from raynas.nas.proxylessnas.mutator import FORWARD_MODES, ProxylessNasMutator
from raynas.nas.proxylessnas.utils import accuracy, cross_entropy_with_label_smoothing
from raynas.nas.replicable import ReplicableTrainer
from raynas.nas.trainer import default_device, export_to
from raynas.nas.utils import AverageMeter, AverageMeterGroup, to_device
from searchers.errors import ConfigError

__all__ = ["ProxylessNasTrainer"]

_logger = logging.getLogger(__name__)


def _batch_size(loader: Any, name: str) -> int:
    sampler = getattr(loader, "batch_sampler", None)
    size = getattr(sampler, "batch_size", None)
    if not isinstance(size, int):
        raise ConfigError(f"ProxylessNasTrainer {name} must be a torch DataLoader with a batch_size, got {loader!r}")
    return size


def _check_settings(*, binary_mode: str, arch_init_type: str, **counts: Any) -> None:
    if binary_mode not in FORWARD_MODES[1:]:
        raise ConfigError(f"ProxylessNasTrainer binary_mode must be one of full_v2, full, two, got {binary_mode!r}")
    if arch_init_type not in ("normal", "uniform"):
        raise ConfigError(f"ProxylessNasTrainer arch_init_type must be normal or uniform, got {arch_init_type!r}")
    for name, value in counts.items():
        low = 1 if name in ("grad_update_arch_param_every", "arch_valid_frequency") else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"ProxylessNasTrainer {name} must be an integer >= {low}, got {value!r}")


class ProxylessNasTrainer(ReplicableTrainer, BaseTrainer):
    """ProxylessNAS with binary gates (NNI's arguments and defaults; ``**options`` are raynas'
    extras, :class:`~raynas.nas.replicable.TrainerOptions`).

    Args:
        model: the model; its mutables must be LayerChoices.
        model_optim: the weights' optimizer (built before the trainer, as in NNI, so that it
            does not hold the architecture weights).
        device: the device.
        train_loader: the training ``DataLoader``.
        valid_loader: the validation ``DataLoader`` (architecture steps and validation).
        label_smoothing: label smoothing of the loss (0: plain cross-entropy).
        n_epochs: search epochs after the warm-up.
        init_lr: initial learning rate of the cosine schedule.
        binary_mode: forward mode of an architecture step: ``full_v2``, ``full`` or ``two``.
        arch_init_type: ``normal`` or ``uniform`` initial architecture weights.
        arch_init_ratio: their standard deviation / half-range.
        arch_optim_lr: Adam learning rate of the architecture weights.
        arch_weight_decay: their weight decay.
        grad_update_arch_param_every: architecture steps after every this many batches.
        grad_update_steps: architecture steps each time.
        warmup: run the warm-up epochs first.
        warmup_epochs: warm-up epochs.
        arch_valid_frequency: validate every this many search epochs.
        load_ckpt: resume from ``ckpt_path`` in :meth:`train`.
        ckpt_path: where the checkpoint is written after every epoch (``None``: nowhere).
        arch_path: where the architecture is exported after every epoch (``None``: nowhere).

    Raises:
        ConfigError: a loader is not a DataLoader, or a bad ``binary_mode``, ``arch_init_type``
            or step count.
    """

    _transient = ReplicableTrainer._transient + ("_valid_iter",)

    # NNI's signature, argument for argument
    # Longer than 60 lines: NNI's signature of 22 arguments takes 25 of them.
    def __init__(
        self,
        model: nn.Module,
        model_optim: torch.optim.Optimizer,
        device: torch.device | str | None,
        train_loader: Any,
        valid_loader: Any,
        label_smoothing: float = 0.1,
        n_epochs: int = 120,
        init_lr: float = 0.025,
        binary_mode: str = "full_v2",
        arch_init_type: str = "normal",
        arch_init_ratio: float = 1e-3,
        arch_optim_lr: float = 1e-3,
        arch_weight_decay: float = 0,
        grad_update_arch_param_every: int = 5,
        grad_update_steps: int = 1,
        warmup: bool = True,
        warmup_epochs: int = 25,
        arch_valid_frequency: int = 1,
        load_ckpt: bool = False,
        ckpt_path: str | None = None,
        arch_path: str | None = None,
        **options: Any,
    ):
        self.setup_replicas(type(self).__name__, options)
        _check_settings(
            binary_mode=binary_mode,
            arch_init_type=arch_init_type,
            n_epochs=n_epochs,
            warmup_epochs=warmup_epochs,
            grad_update_steps=grad_update_steps,
            grad_update_arch_param_every=grad_update_arch_param_every,
            arch_valid_frequency=arch_valid_frequency,
        )
        self.model_optim = model_optim
        self.train_loader = self.user_train_loader = train_loader
        self.valid_loader = self.user_valid_loader = valid_loader
        self.device = default_device(device)
        self.n_epochs, self.init_lr, self.label_smoothing = n_epochs, init_lr, label_smoothing
        self.warmup, self.warmup_epochs, self.arch_valid_frequency = warmup, warmup_epochs, arch_valid_frequency
        self.train_batch_size = _batch_size(train_loader, "train_loader")
        self.valid_batch_size = _batch_size(valid_loader, "valid_loader")
        self.grad_update_arch_param_every = grad_update_arch_param_every
        self.grad_update_steps = grad_update_steps
        self.binary_mode = binary_mode
        self.load_ckpt, self.ckpt_path, self.arch_path = load_ckpt, ckpt_path, arch_path
        self.mutator = ProxylessNasMutator(model)
        self.model = nn.DataParallel(model)  # after the mutator, as NNI (a pass-through without GPUs)
        self.model.to(self.device)
        self._valid_iter = None
        self._init_arch_params(arch_init_type, arch_init_ratio)
        self.arch_optimizer = torch.optim.Adam(
            self.mutator.get_architecture_parameters(),
            arch_optim_lr,
            weight_decay=arch_weight_decay,
            betas=(0.0, 0.999),
            eps=1e-8,
        )
        self.criterion = nn.CrossEntropyLoss()
        self.warmup_curr_epoch = 0
        self.train_curr_epoch = 0
        self.callbacks = []

    def _init_arch_params(self, init_type: str = "normal", init_ratio: float = 1e-3) -> None:
        for param in self.mutator.get_architecture_parameters():
            if init_type == "normal":
                param.data.normal_(0, init_ratio)
            else:
                param.data.uniform_(-init_ratio, init_ratio)

    # -- NNI's public methods -------------------------------------------------------------------

    def train(self) -> None:
        """Warm up (unless ``warmup=False``), then search; resume from ``ckpt_path`` with ``load_ckpt``."""
        if self.load_ckpt:
            self.load_checkpoint()
        self.run_units()

    def validate(self) -> tuple[float, float, float]:
        """Validate the most probable ops: ``(loss, top-1, top-5)`` averages (raynas; NNI raises)."""
        return self._validate()

    def export(self, file_name: str) -> None:
        """Write ``mutator.sample_final()`` (one-hot bool lists) to ``file_name`` as JSON."""
        export_to(file_name, self.mutator.sample_final())

    def save_checkpoint(self) -> None:
        """Write ``ckpt_path`` (NNI's dict: epochs, model, optim, arch_optim) and export to ``arch_path``."""
        if self.ckpt_path:
            from raynas._io import write_torch_atomic

            write_torch_atomic(self.ckpt_path, self._nni_state())
        if self.arch_path:
            self.export(self.arch_path)
        if self.options.checkpoint_dir is not None:
            self.checkpoint()

    def load_checkpoint(self) -> None:
        """Resume from ``ckpt_path``.

        Raises:
            ConfigError: ``ckpt_path`` is not set.
        """
        if self.ckpt_path is None:
            raise ConfigError("ProxylessNasTrainer load_ckpt=True needs ckpt_path, got None")
        ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        self.warmup_curr_epoch = ckpt["warmup_curr_epoch"]
        self.train_curr_epoch = ckpt["train_curr_epoch"]
        self.model.load_state_dict(ckpt["model"])
        self.model_optim.load_state_dict(ckpt["optim"])
        self.arch_optimizer.load_state_dict(ckpt["arch_optim"])

    def _nni_state(self) -> dict[str, Any]:
        return {
            "warmup_curr_epoch": self.warmup_curr_epoch,
            "train_curr_epoch": self.train_curr_epoch,
            "model": self.model.state_dict(),
            "optim": self.model_optim.state_dict(),
            "arch_optim": self.arch_optimizer.state_dict(),
        }

    # -- the units: warm-up epochs, then search epochs ------------------------------------------

    def units(self) -> list[tuple[str, int]]:
        warm = [("warmup", e) for e in range(self.warmup_curr_epoch, self.warmup_epochs)] if self.warmup else []
        return warm + [("train", e) for e in range(self.train_curr_epoch, self.n_epochs)]

    def run_unit(self, unit: tuple[str, int]) -> AverageMeterGroup:
        phase, epoch = unit
        return self._warm_up_epoch(epoch) if phase == "warmup" else self._train_epoch(epoch)

    def end_unit(self, unit: tuple[str, int], metrics: Mapping[str, float]) -> None:
        phase, epoch = unit
        if phase == "warmup" or (epoch + 1) % self.arch_valid_frequency == 0:
            val_loss, val_top1, val_top5 = self._validate()
            _logger.info(
                "%s Valid [%d]\tloss %.3f\ttop-1 acc %.3f\ttop-5 acc %.3f\tTrain top-1 %.3f",
                "Warmup" if phase == "warmup" else "Search",
                epoch + 1,
                val_loss,
                val_top1,
                val_top5,
                metrics.get("top1", float("nan")),
            )
        if phase == "warmup":
            self.warmup_curr_epoch = epoch + 1
        else:
            self.train_curr_epoch = epoch + 1
        self.save_checkpoint()

    def progress(self) -> int:
        return self.warmup_curr_epoch + self.train_curr_epoch

    def stateful(self) -> dict[str, Any]:
        return {"model": self.model, "model_optim": self.model_optim, "arch_optimizer": self.arch_optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {"warmup_curr_epoch": self.warmup_curr_epoch, "train_curr_epoch": self.train_curr_epoch}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.warmup_curr_epoch = int(state["warmup_curr_epoch"])
        self.train_curr_epoch = int(state["train_curr_epoch"])

    def build_loaders(self) -> None:
        """The user's loaders (on a replica: its shards of them)."""
        self.train_loader = self.shard_loader(self.user_train_loader)
        self.valid_loader = self.shard_loader(self.user_valid_loader)
        self._valid_iter = None

    # -- training -------------------------------------------------------------------------------

    def _loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing > 0:
            return cross_entropy_with_label_smoothing(output, labels, self.label_smoothing)
        return self.criterion(output, labels)

    def _weight_step(self, images: Any, labels: torch.Tensor, meters: AverageMeterGroup) -> None:
        """A sampled single path trained on one batch (architecture weights frozen)."""
        images, labels = to_device(images, self.device), to_device(labels, self.device)
        self.mutator.reset_binary_gates()
        self.mutator.unused_modules_off()
        output = self.model(images)
        loss = self._loss(output, labels)
        acc1, acc5 = accuracy(output, labels, topk=(1, 5))
        meters.update({"loss": loss.item(), "top1": acc1.item(), "top5": acc5.item()})
        self.model.zero_grad()
        self.backward_weights(loss)
        self.model_optim.step()
        self.mutator.unused_modules_back()
        self.step_done()

    def _warm_up_epoch(self, epoch: int) -> AverageMeterGroup:
        lr_max = 0.05
        n_batch = len(self.train_loader)
        total = self.warmup_epochs * n_batch
        meters = AverageMeterGroup()
        self.model.train()
        for i, (images, labels) in enumerate(self.train_loader):
            warmup_lr = 0.5 * lr_max * (1 + math.cos(math.pi * (epoch * n_batch + i) / total))
            for group in self.model_optim.param_groups:
                group["lr"] = warmup_lr
            self._weight_step(images, labels, meters)
            if i % 10 == 0 or i + 1 == n_batch:
                _logger.info("Warmup Train [%d][%d/%d]\t%s\tlr %.5f", epoch + 1, i, n_batch - 1, meters, warmup_lr)
        return meters

    def _train_epoch(self, epoch: int) -> AverageMeterGroup:
        n_batch = len(self.train_loader)
        schedule = {
            i: self.grad_update_steps for i in range(n_batch) if (i + 1) % self.grad_update_arch_param_every == 0
        }
        meters = AverageMeterGroup()
        self.model.train()
        for i, (images, labels) in enumerate(self.train_loader):
            lr = 0.5 * self.init_lr * (1 + math.cos(math.pi * (epoch * n_batch + i) / (self.n_epochs * n_batch)))
            for group in self.model_optim.param_groups:
                group["lr"] = lr
            self._weight_step(images, labels, meters)
            if epoch > 0:
                for _ in range(schedule.get(i, 0)):
                    self.mutator.arch_requires_grad()
                    arch_loss, _ = self._gradient_step()
                    self.mutator.arch_disable_grad()
                    _logger.info("Architecture [%d-%d]\tLoss %.4f", epoch + 1, i, arch_loss)
            if i % 10 == 0 or i + 1 == n_batch:
                _logger.info("Train [%d][%d/%d]\t%s\tlr %.5f", epoch + 1, i, n_batch - 1, meters, lr)
        return meters

    def _valid_next_batch(self) -> Any:
        if self._valid_iter is None:
            self._valid_iter = iter(self.valid_loader)
        try:
            return next(self._valid_iter)
        except StopIteration:
            self._valid_iter = iter(self.valid_loader)
            return next(self._valid_iter)

    def _gradient_step(self) -> tuple[float, None]:
        """One architecture step on a validation batch (at the training batch size)."""
        self.valid_loader.batch_sampler.batch_size = self.train_batch_size
        self.valid_loader.batch_sampler.drop_last = True
        self.model.train()
        self.mutator.change_forward_mode(self.binary_mode)
        images, labels = self._valid_next_batch()
        images, labels = to_device(images, self.device), to_device(labels, self.device)
        self.mutator.reset_binary_gates()
        self.mutator.unused_modules_off()
        output = self.model(images)
        loss = self.criterion(output, labels)
        self.model.zero_grad()
        loss.backward()
        self.reduce_mean([g.grad for g in self.mutator.binary_gates() if g.grad is not None])
        self.mutator.set_arch_param_grad()
        self.arch_optimizer.step()
        if self.mutator.get_forward_mode() == "two":
            self.mutator.rescale_updated_arch_param()
        self.mutator.unused_modules_back()
        self.mutator.change_forward_mode(None)
        self.step_done()
        return loss.item(), None

    def _validate(self) -> tuple[float, float, float]:
        """The most probable ops on the validation loader (train mode, no gradients, as NNI)."""
        self.valid_loader.batch_sampler.batch_size = self.valid_batch_size
        self.valid_loader.batch_sampler.drop_last = False
        self.mutator.set_chosen_op_active()
        self.mutator.unused_modules_off()
        self.model.train()
        losses, top1, top5 = AverageMeter("losses"), AverageMeter("top1"), AverageMeter("top5")
        with torch.no_grad():
            for images, labels in self.valid_loader:
                images, labels = to_device(images, self.device), to_device(labels, self.device)
                output = self.model(images)
                loss = self.criterion(output, labels)
                acc1, acc5 = accuracy(output, labels, topk=(1, 5))
                n = labels.size(0)
                losses.update(loss.item(), n)
                top1.update(acc1.item(), n)
                top5.update(acc5.item(), n)
        self.mutator.unused_modules_back()
        return float(losses.avg), float(top1.avg), float(top5.avg)
