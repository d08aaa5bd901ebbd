"""One supernet replica and its training step.

:class:`SupernetReplica` is a plain Python object: local mode drives one in the calling process,
Ray mode wraps one in each actor (:mod:`raynas.train.replicas`). A step is::

    mutator.reset()                       # decide the path (same on every rank when "shared")
    loss = criterion(model(x), y)         # under autocast for bf16 / fp16
    loss.backward()                       # (scaled for fp16)
    all-reduce the gradients (average)    # only when replicas > 1: buckets during backward
                                          # ("shared"), one flat buffer after it ("independent")
    clip, optimizer.step()                # identical gradients -> identical parameters

With a learnable mutator (:class:`~raynas.nas.LearnableMutator`: ``darts``, ``enas``, ``proxylessnas``) the
training split is first cut in two halves as NNI's ``DartsTrainer`` cuts it; a step takes a
batch of each::

    mutator.arch_step(arch batch, reduce=all-reduce mean)   # the mutator's parameters' gradients
                                                            # (and ENAS' reward) are averaged
                                                            # across replicas before its optimizer
                                                            # steps: they stay bit-identical
    with torch.no_grad(): mutator.reset()                   # then the weight step as above,
    ...                                                     # on the weight half

The parts: the data and this replica's shard (:mod:`raynas.train.data`, read through the
DataLoaders of :mod:`raynas.train.loader`), the loss and metrics (:mod:`raynas.train.objective`), the weights' step
(:mod:`raynas.train.step`), the gradient sync (:mod:`raynas.train.sync`) and the reports
(:mod:`raynas.train.reports`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.costs import largest_path, profile_costs
from raynas.nas.learnable import LearnableMutator
from raynas.nas.mutator import Mutator
from raynas.train.checkpoint import to_cpu
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.data import Batches, ReplicaData, as_data_spec
from raynas.train.objective import logits_of, metric_values, resolve_loss, resolve_metrics
from raynas.train.reports import ReplicaInfo, ReplicaState, ReportMeter, StepReport, parameter_digest
from raynas.train.resolve import check_precision, resolve_device, resolve_factory
from raynas.train.sampling import build_mutator
from raynas.train.step import WeightStep
from raynas.train.sync import GradientSync, NoSync, choose_sync, join_process_group, leave_process_group, shm_capable
from searchers.errors import ConfigTypeError

__all__ = ["SupernetReplica", "MutatorFactory"]

MutatorFactory = Callable[..., Mutator]


def _candidate_names(mutable: Any) -> list[str]:
    names = getattr(mutable, "names", None)
    if names is None:
        names = [label or str(i) for i, label in enumerate(mutable.choose_from)]
    return list(names)


class SupernetReplica:
    """One replica: model, mutator, optimizer, its data shard, and the step.

    Construction only stores its arguments; :meth:`setup` builds everything (so a Ray actor can
    be created cheaply and set up in parallel).

    Args:
        factory: zero-argument model factory, or ``"module:function"``.
        data: a :class:`~raynas.train.data.DataSpec`, or the splits (a mapping, or a callable /
            ``"module:function"`` returning one; called in this process).
        config: the supernet settings.
        rank: this replica's rank.
        world_size: number of replicas.
        mutator_factory: ``f(model, *, config, rank, example) -> Mutator``; default
            :func:`raynas.train.sampling.build_mutator` (``config.algorithm``).
        trace: record each step's parameter digest and path (tests and debugging).
        criterion: the loss ``f(output, target)`` (default: ``config.loss``, else cross-entropy).
        metrics: ``f(output, target) -> dict`` reported per epoch (default: ``config.metrics``;
            without either, only the accuracy).
    """

    def __init__(
        self,
        *,
        factory: Callable[[], nn.Module] | str,
        data: Any,
        config: SupernetConfig,
        rank: int = 0,
        world_size: int = 1,
        mutator_factory: MutatorFactory | None = None,
        trace: bool = False,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metrics: Callable | None = None,
    ):
        self.factory = factory
        self.data = data
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.mutator_factory = mutator_factory or build_mutator
        self.trace = trace
        self.criterion = criterion or resolve_loss(config.loss, key="supernet.loss")
        spec = metrics if metrics is not None else config.metrics
        self.metrics = resolve_metrics(spec, key="supernet.metrics") if spec is not None else None
        self.last_output: Any = None
        self.model: nn.Module | None = None
        self.mutator: Mutator | None = None
        self.weights: WeightStep | None = None
        self.sync: GradientSync = NoSync(world_size)
        self.distributed = False
        self.learnable = False
        self.last_arch: dict[str, float] = {}
        self._shm_plan: dict[str, Any] | None = None

    # -- process group --------------------------------------------------------------------

    def shm_capable(self) -> bool:
        """Whether this replica can average gradients through shared memory (see
        :func:`raynas.train.sync.shm_capable`)."""
        return shm_capable(self.config)

    def connect(self, *, init_method: str, shm: Mapping[str, Any] | None = None) -> None:
        """Join the replicas' process group (see :func:`raynas.train.sync.join_process_group`);
        the gradient sync is chosen in :meth:`setup`."""
        self._shm_plan = join_process_group(
            self.config, rank=self.rank, world_size=self.world_size, init_method=init_method, shm=shm
        )
        self.distributed = True

    # -- setup ----------------------------------------------------------------------------

    def setup(self, checkpoint: Mapping[str, Any] | None = None) -> ReplicaInfo:
        """Build the model, mutator, optimizer and gradient sync, and load ``checkpoint`` when given."""
        cfg = self.config
        torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg)
        check_precision(self.device, cfg.precision, key="supernet.precision")
        factory = resolve_factory(self.factory)
        spec = as_data_spec(self.data)
        train = spec.splits()["train"]  # built here, in this replica's process
        torch.manual_seed(cfg.seed)
        model = factory()
        if not isinstance(model, nn.Module):
            raise ConfigTypeError(f"the model factory must return an nn.Module, got {type(model).__name__}")
        self.model = model.to(self.device).train()
        example = Batches(train, self.device).take(torch.arange(min(2, len(train))))[0]
        self.mutator = self.mutator_factory(self.model, config=cfg, rank=self.rank, example=example)
        self.learnable = isinstance(self.mutator, LearnableMutator)
        self._largest: dict[str, torch.Tensor] | None = None
        if cfg.distill > 0:
            if self.learnable:
                raise ConfigError(f"supernet.distill needs a sampling mutator, got {type(self.mutator).__name__}")
            self._largest = largest_path(profile_costs(self.mutator, example))
        # with a learnable mutator the weights train on one half, the architecture on the other
        self.data_stream = ReplicaData(
            train,
            cfg,
            spec=spec,
            device=self.device,
            rank=self.rank,
            world_size=self.world_size,
            learnable=self.learnable,
        )
        self.steps_per_epoch = self.data_stream.steps_per_epoch
        self.weights = WeightStep(self.model, cfg, device=self.device, criterion=self.criterion)
        self.epoch = self.pos = self.step = 0
        lengths = {k: m.length for k, m in self.mutator.choice_mutables.items()}
        self.meter = ReportMeter(lengths, self.device)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, 0x70C4, self.rank]).generate_state(1)[0]))
        if checkpoint is not None:
            self.load_state(checkpoint)
        self.sync = choose_sync(  # every replica at once: the choice may take collectives
            cfg,
            world_size=self.world_size,
            distributed=self.distributed,
            device=self.device,
            model=self.model,
            mutator=self.mutator,
            shm=self._shm_plan,
        )
        self.sync.broadcast(self._shared_tensors())  # rank 0's weights and mutator everywhere
        return ReplicaInfo(
            pid=os.getpid(),
            device=str(self.device),
            steps_per_epoch=self.steps_per_epoch,
            epoch=self.epoch,
            step=self.step,
            candidates={k: _candidate_names(m) for k, m in self.mutator.choice_mutables.items()},
            allreduce=self.sync.name,
        )

    def _shared_tensors(self) -> list[torch.Tensor]:
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return tensors + list(self.mutator.parameters()) + list(self.mutator.buffers())

    def load_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Load weights, optimizer, scaler, this rank's mutator/RNG state, epoch and step."""
        self.model.load_state_dict(checkpoint["model"])
        self.weights.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.weights.scaler is not None and checkpoint.get("scaler"):
            self.weights.scaler.load_state_dict(checkpoint["scaler"])
        states = checkpoint["rank_states"]
        own = states[self.rank] if self.rank < len(states) else None
        if own is None and (self.config.sampling == "shared" or self.learnable) and states:
            # continue the one shared path stream / the architecture parameters every rank shares
            own = {"mutator": states[0]["mutator"]}
        if own is not None:
            self.mutator.load_state_dict(own["mutator"])
            if own.get("torch_rng") is not None:
                torch.set_rng_state(own["torch_rng"])
            if own.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(own["cuda_rng"], self.device)
        self.epoch = int(checkpoint["epoch"])
        self.step = int(checkpoint["step"])
        self.pos = 0

    # -- training -------------------------------------------------------------------------

    def train_step(
        self, x: Any, y: torch.Tensor, arch_batch: tuple[Any, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on a batch; returns ``(loss, correct)`` as detached tensors.

        With a learnable mutator and ``arch_batch`` (a batch of the architecture half), the
        step starts with the mutator's architecture step (after ``arch_warmup_epochs``); its
        report is kept in ``self.last_arch``.
        """
        progress = self.epoch + self.pos / self.steps_per_epoch
        lr = self.weights.set_lr(progress)
        self.last_arch = {}
        if self.learnable and arch_batch is not None and progress >= self.config.arch_warmup_epochs:
            self.last_arch = self.mutator.arch_step(
                arch_batch,
                train_batch=(x, y),
                criterion=self.criterion,
                reduce=self.sync.reduce,
                lr=lr,
                weight_decay=self.config.weight_decay,
            )
        self.weights.zero_grad()
        teacher = None
        if self._largest is not None:  # sandwich rule: the largest path first, it teaches the sampled ones
            self.mutator.apply_decisions(self._largest)
            teacher = self.weights.teacher(x, y)
        paths = int(getattr(self.mutator, "paths_per_step", 1))  # fair sampling accumulates several
        for i in range(paths):
            if i == paths - 1:
                self.sync.before_last_backward()
            self._sample_path()
            out, loss = self.weights.forward_backward(x, y, paths, teacher)
        self.sync.sync_gradients()
        self.weights.apply()
        self.last_output = out
        return loss.detach(), self.weights.correct(logits_of(out), y)

    def _sample_path(self) -> None:
        if self.learnable:
            self.mutator.weight_reset()  # no gradient to the architecture in a weight step
        else:
            self.mutator.reset()
        self.meter.count_path(self.mutator.chosen_indices)

    def _shard_indices(self) -> torch.Tensor:
        """This rank's training indices this epoch (tests check the shards)."""
        return self.data_stream.shard(self.epoch)

    def run(self, n_steps: int) -> StepReport:
        """Train the next ``n_steps`` steps of the current epoch and report on them.

        Raises:
            RuntimeError: fewer than ``n_steps`` steps are left in the epoch.
        """
        if self.pos + n_steps > self.steps_per_epoch:
            raise RuntimeError(
                f"only {self.steps_per_epoch - self.pos} steps are left in epoch {self.epoch}, asked for {n_steps}"
            )
        start = time.perf_counter()
        self.meter.start()
        lr = self.weights.optimizer.param_groups[0]["lr"]
        self.data_stream.take_wait()
        for _ in range(n_steps):
            (x, y), arch_batch = self.data_stream.next(self.epoch, self.pos)
            loss, correct = self.train_step(x, y, arch_batch)
            lr = self.weights.optimizer.param_groups[0]["lr"]
            n = int(y.shape[0])
            self.meter.add_step(loss, correct, n, self.last_arch)
            if self.metrics is not None:
                with torch.no_grad():
                    self.meter.add_metrics(metric_values(self.metrics(self.last_output, y), key="supernet.metrics"), n)
            self.pos += 1
            self.step += 1
            if self.trace:
                entry = {"step": self.step, "digest": parameter_digest(self.model), "path": self.mutator.status()}
                if self.learnable:
                    entry["arch_digest"] = parameter_digest(self.mutator)
                self.meter.trace.append(entry)
        return self.meter.report(
            rank=self.rank,
            epoch=self.epoch,
            pos=self.pos,
            step=self.step,
            lr=lr,
            time_s=time.perf_counter() - start,
            fallbacks=int(getattr(self.mutator, "fallbacks", 0)),
            data_wait_s=self.data_stream.take_wait(),
        )

    def end_epoch(self) -> None:
        """Finish the epoch: average BatchNorm statistics across replicas (if set), move on."""
        if self.pos != self.steps_per_epoch:
            raise RuntimeError(f"epoch {self.epoch} has {self.steps_per_epoch - self.pos} steps left")
        if self.config.bn_sync_buffers:
            self.sync.reduce_mean([buf for buf in self.model.buffers() if buf.is_floating_point()])
        self.data_stream.end_epoch()
        self.epoch += 1
        self.pos = 0

    # -- state ----------------------------------------------------------------------------

    def rank_state(self) -> dict[str, Any]:
        """This rank's mutator and RNG states (one entry of a checkpoint's ``rank_states``)."""
        return to_cpu(
            {
                "mutator": self.mutator.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            }
        )

    def state(self, *, full: bool) -> ReplicaState:
        """The rank state and the path in force; model / optimizer / scaler / epoch / step when
        ``full``; with a learnable mutator also its exported architecture now."""
        parts: dict[str, Any] = {}
        if full:
            scaler = self.weights.scaler
            parts = to_cpu(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.weights.optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                }
            )
            parts.update(epoch=self.epoch, step=self.step)
        return ReplicaState(
            rank_state=self.rank_state(),
            path=self.mutator.status(),
            architecture=self.mutator.export() if self.learnable else None,
            **parts,
        )

    def digest(self) -> str:
        """:func:`~raynas.train.reports.parameter_digest` of the replica's model."""
        return parameter_digest(self.model)

    def close(self) -> None:
        """Leave the process group (if any) and release the gradient sync."""
        if self.distributed:
            leave_process_group()
            self.distributed = False
        self.sync.close()
        self.sync = NoSync(self.world_size)
