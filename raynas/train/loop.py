"""One supernet replica and its training step.

:class:`SupernetReplica` is a plain Python object: local mode drives one in the calling process,
Ray mode wraps one in each actor (:mod:`raynas.train.replicas`). A step is::

    mutator.reset()                       # decide the path (same on every rank when "shared")
    loss = criterion(model(x), y)         # under autocast for bf16 / fp16
    loss.backward()                       # (scaled for fp16)
    all-reduce the gradients (average)    # only when replicas > 1: buckets during backward
                                          # ("shared"), one flat buffer after it ("independent")
    clip, optimizer.step()                # identical gradients -> identical parameters

With a learnable mutator (:class:`~raynas.nas.LearnableMutator`: ``darts``, ``enas``) the
training split is first cut into two seeded halves; a step takes a batch of each::

    mutator.arch_step(arch batch, reduce=all-reduce mean)   # the mutator's parameters' gradients
                                                            # (and ENAS' reward) are averaged
                                                            # across replicas before its optimizer
                                                            # steps: they stay bit-identical
    with torch.no_grad(): mutator.reset()                   # then the weight step as above,
    ...                                                     # on the weight half

The learning rate is a pure function of training progress (:func:`lr_at`), set before each step,
so resuming from a checkpoint continues the schedule exactly.

Each epoch, a seeded permutation of the training split (the same on every rank) is cut into
``replicas`` disjoint, equal shards; rank ``r`` trains on shard ``r`` in batches of
``batch_size`` (an incomplete last batch is dropped, so every rank takes the same number of
steps).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from raynas.nas.learnable import LearnableMutator, split_halves
from raynas.nas.mutator import Mutator
from raynas.train._batch import to_device
from raynas.train._shm import ShmAllReduce, agree_everywhere, shm_path, shm_supported
from raynas.train.checkpoint import to_cpu
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.sampling import build_mutator, largest_path, profile_costs

__all__ = [
    "SupernetReplica",
    "MutatorFactory",
    "lr_at",
    "resolve_device",
    "resolve_factory",
    "resolve_data",
    "build_optimizer",
    "autocast",
    "parameter_digest",
    "steps_per_epoch",
]

MutatorFactory = Callable[..., Mutator]

_log = logging.getLogger(__name__)


def resolve_device(config: SupernetConfig) -> torch.device:
    """The training device: CUDA when asked for or (``auto``) when present, else the CPU."""
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("supernet.device is 'cuda' but no CUDA device is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_factory(factory: Callable[[], nn.Module] | str) -> Callable[[], nn.Module]:
    """A model factory: a zero-argument callable, or ``"package.module:function"``."""
    if isinstance(factory, str):
        from raynas.nas.space import load_factory

        factory = load_factory(factory)
    if not callable(factory):
        raise TypeError(f"a model factory must be callable or 'module:function', got {type(factory).__name__}")
    from raynas.nas.utils import ScopedFactory

    return ScopedFactory(factory)  # the same mutable keys in every process


def resolve_data(data: Any) -> Mapping[str, Dataset]:
    """The data splits: a mapping, or a callable / ``"module:function"`` returning one.

    Raises:
        KeyError: the splits have no ``train`` entry.
        TypeError: the data is neither a mapping nor something that returns one.
    """
    if isinstance(data, str):
        from raynas.nas.space import load_factory

        data = load_factory(data)
    if callable(data) and not isinstance(data, Mapping):
        data = data()
    if not isinstance(data, Mapping):
        raise TypeError(
            f"data must be a mapping of split -> dataset or a callable returning one, got {type(data).__name__}"
        )
    if "train" not in data:
        raise KeyError(f"the data has no 'train' split (splits: {', '.join(map(str, data)) or 'none'})")
    return data


def steps_per_epoch(n_train: int, config: SupernetConfig, world_size: int) -> int:
    """Steps each replica takes per epoch (every rank the same)."""
    steps = (n_train // world_size) // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"supernet.batch_size={config.batch_size} is larger than a replica's shard "
            f"({n_train} training samples / {world_size} replicas)"
        )
    return steps


def lr_at(config: SupernetConfig, epoch_progress: float) -> float:
    """The learning rate after ``epoch_progress`` epochs (fractional) of training."""
    warm = config.warmup_epochs
    if warm > 0 and epoch_progress < warm:
        return config.lr * (epoch_progress + 1e-8) / warm
    if config.lr_schedule == "constant" or config.total_epochs <= warm:
        return config.lr
    t = min(max((epoch_progress - warm) / (config.total_epochs - warm), 0.0), 1.0)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(params: Any, config: SupernetConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, weight decay) or Adam, as the config says."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a precision (``fp32``: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in ``named_parameters`` order (bit-exact comparison)."""
    h = hashlib.sha256()
    for _name, p in model.named_parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _candidate_names(mutable: Any) -> list[str]:
    names = getattr(mutable, "names", None)
    if names is None:
        names = [label or str(i) for i, label in enumerate(mutable.choose_from)]
    return list(names)


class _Batches:
    """Fast batch access: TensorDatasets are indexed directly, other datasets collated.

    Items are ``(x, y)`` as in NNI; ``x`` may be a tensor or a tuple / list / dict of tensors
    (``default_collate`` batches each part), moved to the device recursively; the model is then
    called ``model(x)`` (see :mod:`raynas.train._batch`).
    """

    def __init__(self, dataset: Dataset, device: torch.device):
        self.dataset = dataset
        self.device = device
        self.tensors = tuple(t.to(device) for t in dataset.tensors) if isinstance(dataset, TensorDataset) else None

    def __len__(self) -> int:
        return len(self.dataset)

    def take(self, index: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if self.tensors is not None:
            idx = index.to(self.device)
            x, y = self.tensors[0][idx], self.tensors[1][idx]
        else:
            x, y = default_collate([self.dataset[int(i)] for i in index])[:2]
            x, y = to_device(x, self.device), to_device(y, self.device)
        return x, y


class SupernetReplica:
    """One replica: model, mutator, optimizer, its data shard, and the step.

    Construction only stores its arguments; :meth:`setup` builds everything (so a Ray actor can
    be created cheaply and set up in parallel).

    Args:
        factory: zero-argument model factory, or ``"module:function"``.
        data: the splits (a mapping, or a callable / ``"module:function"`` returning one).
        config: the supernet settings.
        rank: this replica's rank.
        world_size: number of replicas.
        mutator_factory: ``f(model, *, config, rank, example) -> Mutator``; default
            :func:`raynas.train.sampling.build_mutator` (``uniform`` or ``spos``).
        trace: record each step's parameter digest and path (tests and debugging).
        criterion: the loss (default: cross-entropy).
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
    ):
        self.factory = factory
        self.data = data
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.mutator_factory = mutator_factory or build_mutator
        self.trace = trace
        self.criterion = criterion or nn.functional.cross_entropy
        self.model: nn.Module | None = None
        self.mutator: Mutator | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: Any = None
        self.distributed = False
        self.learnable = False
        self.last_arch: dict[str, float] = {}
        self._shm_spec: dict[str, Any] | None = None
        self._shm: ShmAllReduce | None = None

    # -- setup ----------------------------------------------------------------------------

    def shm_capable(self) -> bool:
        """Whether this replica can average gradients through shared memory (``allreduce``
        ``auto``/``shm``, CPU training on x86-64).

        Raises:
            ConfigError: ``allreduce`` is ``shm`` but this replica cannot use it.
        """
        mode = self.config.allreduce
        if mode == "backend":
            return False
        reason = None
        if resolve_device(self.config).type != "cpu":
            reason = "it needs CPU training (CUDA replicas use nccl)"
        elif not shm_supported():
            reason = f"it needs an x86-64 machine, this one is {platform.machine()!r}"
        if reason is not None and mode == "shm":
            raise ConfigError(f"supernet.allreduce is 'shm' but {reason}; use 'auto' or 'backend'")
        return reason is None

    def connect(self, *, init_method: str, shm: Mapping[str, Any] | None = None) -> None:
        """Join the replicas' process group (gloo on CPU, nccl on CUDA).

        Args:
            init_method: the rendezvous address (``tcp://ip:port``).
            shm: average gradients through shared memory on this node: ``{"name", "local_rank",
                "local_size", "leaders"}`` (``leaders``: the ranks of every node's first replica,
                ``None`` when all replicas share one node). The buffer is made in :meth:`setup`.
        """
        import torch.distributed as dist

        backend = "nccl" if resolve_device(self.config).type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=self.config.dist_timeout_s),
        )
        self.distributed = True
        self._shm_spec = dict(shm) if shm is not None else None
        if self._shm_spec is not None and self._shm_spec.get("leaders") is not None:
            # every rank takes part in making the group, members or not
            self._shm_spec["group"] = dist.new_group(ranks=list(self._shm_spec["leaders"]))

    def _open_shm(self) -> None:
        """Make this node's shared buffer (local rank 0 creates it, every rank maps it, then
        the name is removed: nothing is left behind, even when a replica is killed)."""
        import torch.distributed as dist

        spec = self._shm_spec
        capacity = max(
            sum(self._numels) + len(self._numels),  # gradients and their presence flags
            sum(b.numel() for b in self.model.buffers() if b.is_floating_point()),  # BatchNorm statistics
            sum(p.numel() for p in self.mutator.parameters()) + 8,  # architecture gradients, ENAS reward
        )
        reducer = ShmAllReduce(
            path=shm_path(spec["name"]),
            local_rank=int(spec["local_rank"]),
            local_size=int(spec["local_size"]),
            capacity=capacity,
            timeout_s=self.config.dist_timeout_s,
            leaders=spec.get("group"),
        )
        if reducer.attach(agree_everywhere):
            self._shm = reducer
            return
        detail = reducer.error or "another replica could not make its node's shared buffer"
        if self.config.allreduce == "shm":
            raise ConfigError(f"supernet.allreduce is 'shm' but {detail}; use 'auto' or 'backend'")
        _log.warning("shared-memory all-reduce unavailable (%s); averaging gradients over %s", detail, dist.get_backend())

    def _allreduce_name(self) -> str:
        if not (self.distributed and self.world_size > 1):
            return "none"
        if self._shm is not None:
            return "shm"
        import torch.distributed as dist

        return str(dist.get_backend())

    def _all_reduce(self, flat: torch.Tensor) -> None:
        """Sum a flat float32 tensor in place across the replicas."""
        if self._shm is not None:
            self._shm.all_reduce(flat)
        else:
            import torch.distributed as dist

            dist.all_reduce(flat)

    def setup(self, checkpoint: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Build the model, mutator and optimizer, and load ``checkpoint`` when given.

        Returns:
            ``{"pid", "device", "steps_per_epoch", "epoch", "step", "candidates"}``.
        """
        cfg = self.config
        torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("supernet.precision 'fp16' needs a CUDA device (use 'bf16' on the CPU)")
        factory = resolve_factory(self.factory)
        splits = resolve_data(self.data)
        torch.manual_seed(cfg.seed)
        model = factory()
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model factory must return an nn.Module, got {type(model).__name__}")
        self.model = model.to(self.device).train()
        self.train_data = _Batches(splits["train"], self.device)
        example = self.train_data.take(torch.arange(min(2, len(self.train_data))))[0]
        self.mutator = self.mutator_factory(self.model, config=cfg, rank=self.rank, example=example)
        self.learnable = isinstance(self.mutator, LearnableMutator)
        self._largest: dict[str, torch.Tensor] | None = None
        if cfg.distill > 0:
            if self.learnable:
                raise ConfigError(f"supernet.distill needs a sampling mutator, got {type(self.mutator).__name__}")
            self._largest = largest_path(profile_costs(self.mutator, example))
        if self.learnable:  # weights train on one half, the architecture on the other
            weight_half, arch_half = split_halves(len(self.train_data), cfg.seed)
            self._halves: tuple[np.ndarray, np.ndarray] | None = (weight_half, arch_half)
            self.steps_per_epoch = steps_per_epoch(len(weight_half), cfg, self.world_size)
        else:
            self._halves = None
            self.steps_per_epoch = steps_per_epoch(len(self.train_data), cfg, self.world_size)
        self.optimizer = build_optimizer(self.model.parameters(), cfg)
        if cfg.precision == "fp16":
            self.scaler = torch.amp.GradScaler("cuda")
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._numels = [p.numel() for p in self._params]
        self._zeros = torch.zeros(max(self._numels, default=0), device=self.device)
        self.epoch = 0
        self.pos = 0
        self.step = 0
        self._shard: torch.Tensor | None = None
        self._arch_shard: torch.Tensor | None = None
        self._reset_counts()
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, 0x70C4, self.rank]).generate_state(1)[0]))
        if checkpoint is not None:
            self.load_state(checkpoint)
        if self.distributed:
            self._broadcast_from_rank0()
        if self._shm_spec is not None and self._shm is None:
            self._open_shm()
        # overlapping buckets with backward pays off over gloo/nccl; the shared-memory reduction
        # costs microseconds and runs once, after backward
        self._overlap = self.distributed and self.world_size > 1 and cfg.sampling == "shared" and self._shm is None
        self._hooks_active = False
        self._bucket: list[nn.Parameter] = []
        self._bucket_numel = 0
        self._pending: list[tuple[Any, torch.Tensor, list[nn.Parameter]]] = []
        self._reduced: set[int] = set()
        if self._overlap:
            for p in self._params:
                p.register_post_accumulate_grad_hook(self._on_grad_ready)
        return {
            "pid": os.getpid(),
            "device": str(self.device),
            "steps_per_epoch": self.steps_per_epoch,
            "epoch": self.epoch,
            "step": self.step,
            "candidates": {k: list(_candidate_names(m)) for k, m in self.mutator.choice_mutables.items()},
            "allreduce": self._allreduce_name(),
        }

    def load_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Load weights, optimizer, scaler, this rank's mutator/RNG state, epoch and step."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
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

    def _broadcast_from_rank0(self) -> None:
        import torch.distributed as dist

        with torch.no_grad():
            tensors = list(self.model.parameters()) + list(self.model.buffers())
            tensors += list(self.mutator.parameters()) + list(self.mutator.buffers())
            for t in tensors:
                dist.broadcast(t.data, src=0)

    # -- training -------------------------------------------------------------------------

    def _reset_counts(self) -> None:
        self._counts = {k: np.zeros(m.length, dtype=np.int64) for k, m in self.mutator.choice_mutables.items()}

    def _shard_indices(self) -> torch.Tensor:
        if self._shard is None:
            rng = np.random.default_rng([self.config.seed, 0xDA7A, self.epoch])
            if self._halves is None:
                perm = rng.permutation(len(self.train_data))
            else:
                perm = rng.permutation(self._halves[0])
                arch = rng.permutation(self._halves[1])
                per = len(arch) // self.world_size
                self._arch_shard = torch.from_numpy(arch[self.rank * per : (self.rank + 1) * per])
            per = len(perm) // self.world_size
            self._shard = torch.from_numpy(perm[self.rank * per : (self.rank + 1) * per])
        return self._shard

    def _reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Average ``tensors`` in place across the replicas (one flat all-reduce)."""
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        self._all_reduce(flat)
        flat.div_(self.world_size)
        with torch.no_grad():
            for t, view in zip(tensors, flat.split([t.numel() for t in tensors])):
                t.copy_(view.view_as(t).to(t.dtype))

    def _arch_step(
        self, x: torch.Tensor, y: torch.Tensor, arch_batch: tuple[torch.Tensor, torch.Tensor], lr: float
    ) -> dict[str, float]:
        cfg = self.config
        if self.epoch + self.pos / self.steps_per_epoch < cfg.arch_warmup_epochs:
            return {}
        reduce = self._reduce_mean if self.distributed and self.world_size > 1 else None
        return self.mutator.arch_step(
            arch_batch,
            train_batch=(x, y),
            criterion=self.criterion,
            reduce=reduce,
            lr=lr,
            weight_decay=cfg.weight_decay,
        )

    # Gradient reduction overlapped with backward (``shared`` sampling): every replica runs the
    # same path through the same graph, so the gradients become ready in the same order
    # everywhere; buckets of about _BUCKET elements are all-reduced asynchronously as they fill,
    # while the rest of the backward pass runs. ``independent`` sampling (different paths, so
    # different parameter sets) uses the one flat all-reduce of :meth:`_sync_grads`.
    _BUCKET = 4096

    def _on_grad_ready(self, p: torch.Tensor) -> None:
        if not self._hooks_active:
            return
        self._bucket.append(p)
        self._bucket_numel += p.numel()
        if self._bucket_numel >= self._BUCKET:
            self._flush_bucket()

    def _flush_bucket(self) -> None:
        import torch.distributed as dist

        if not self._bucket:
            return
        params = self._bucket
        flat = torch.cat([p.grad.detach().reshape(-1).float() for p in params])
        self._pending.append((dist.all_reduce(flat, async_op=True), flat, params))
        self._reduced.update(id(p) for p in params)
        self._bucket, self._bucket_numel = [], 0

    def _finish_overlapped(self) -> None:
        self._hooks_active = False
        self._flush_bucket()
        # gradients of earlier paths of the step (fair sampling) that the last backward missed
        self._bucket = [p for p in self._params if p.grad is not None and id(p) not in self._reduced]
        self._flush_bucket()
        for work, flat, params in self._pending:
            work.wait()
            flat.div_(self.world_size)
            for p, view in zip(params, flat.split([p.numel() for p in params])):
                p.grad = view.view_as(p).to(p.dtype)
        self._pending, self._reduced = [], set()

    def _sync_grads(self) -> None:
        grads = [p.grad for p in self._params]
        pieces = [
            g.detach().reshape(-1).float() if g is not None else self._zeros[:n] for g, n in zip(grads, self._numels)
        ]
        flags = torch.tensor([0.0 if g is None else 1.0 for g in grads], device=self.device)
        flat = torch.cat(pieces + [flags])
        self._all_reduce(flat)
        total = flat.numel() - flags.numel()
        flat[:total].div_(self.world_size)
        views = flat.split(self._numels + [flags.numel()])
        touched = views[-1].tolist()
        for p, view, hit in zip(self._params, views, touched):
            p.grad = view.view_as(p).to(p.dtype) if hit > 0 else None

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _teacher_pass(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sandwich rule's largest path: train it on the plain loss; its detached softmax."""
        self.mutator.apply_decisions(self._largest)
        with autocast(self.device, self.config.precision):
            out = self.model(x)
            loss = self.criterion(out, y)
        if out.dim() != 2:
            raise ValueError(
                f"supernet.distill needs the model to output (batch, classes) logits, got shape {tuple(out.shape)}"
            )
        self._backward(loss)
        return torch.softmax(out.detach().float(), dim=-1)

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, paths: int, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.learnable:
            self.mutator.weight_reset()  # no gradient to the architecture in a weight step
        else:
            self.mutator.reset()
        for key, (_mask, chosen, _w) in self.mutator._plans.items():
            self._counts[key][list(chosen)] += 1
        with autocast(self.device, self.config.precision):
            out = self.model(x)
            loss = self.criterion(out, y)
            total = loss
            if teacher is not None:
                w = self.config.distill
                kd = nn.functional.kl_div(torch.log_softmax(out.float(), dim=-1), teacher, reduction="batchmean")
                total = (1.0 - w) * loss + w * kd
        self._backward(total / paths if paths > 1 else total)
        return out, loss

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, arch_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on a batch; returns ``(loss, correct)`` as detached tensors.

        With a learnable mutator and ``arch_batch`` (a batch of the architecture half), the
        step starts with the mutator's architecture step (after ``arch_warmup_epochs``); its
        report is kept in ``self.last_arch``.
        """
        cfg = self.config
        lr = lr_at(cfg, self.epoch + self.pos / self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_arch: dict[str, float] = {}
        if self.learnable and arch_batch is not None:
            self.last_arch = self._arch_step(x, y, arch_batch, lr)
        self.optimizer.zero_grad(set_to_none=True)
        paths = int(getattr(self.mutator, "paths_per_step", 1))
        # sandwich rule: the largest path first, its outputs teach the sampled paths
        teacher = self._teacher_pass(x, y) if self._largest is not None else None
        for _ in range(paths - 1):  # fair sampling: accumulate the gradients of several paths
            self._forward_backward(x, y, paths, teacher)
        self._hooks_active = self._overlap
        out, loss = self._forward_backward(x, y, paths, teacher)
        if self._overlap:
            self._finish_overlapped()
        elif self.distributed and self.world_size > 1:
            self._sync_grads()
        if self.scaler is not None:
            if cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_([p for p in self._params if p.grad is not None], cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_([p for p in self._params if p.grad is not None], cfg.grad_clip)
            self.optimizer.step()
        with torch.no_grad():
            correct = (out.argmax(dim=-1) == y).sum() if out.dim() == 2 else torch.zeros((), device=self.device)
        return loss.detach(), correct

    def run(self, n_steps: int) -> dict[str, Any]:
        """Train the next ``n_steps`` steps of the current epoch and report on them.

        Returns:
            ``{"rank", "epoch", "pos", "step", "steps", "samples", "loss", "accuracy", "lr",
            "time_s", "counts", "trace", "arch"}``; ``counts`` holds, per key, how often each
            candidate was on the path since the last report; ``trace`` (when tracing) one
            ``{"step", "digest", "path"}`` per step (with a learnable mutator also
            ``"arch_digest"``, the digest of its parameters); ``arch`` the mean of the
            architecture steps' scalars (empty without a learnable mutator).

        Raises:
            RuntimeError: fewer than ``n_steps`` steps are left in the epoch.
        """
        if self.pos + n_steps > self.steps_per_epoch:
            raise RuntimeError(
                f"only {self.steps_per_epoch - self.pos} steps are left in epoch {self.epoch}, asked for {n_steps}"
            )
        start = time.perf_counter()
        shard = self._shard_indices()
        bs = self.config.batch_size
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        samples = 0
        trace = []
        arch_sums: dict[str, float] = {}
        arch_steps = 0
        lr = self.optimizer.param_groups[0]["lr"]
        for _ in range(n_steps):
            part = slice(self.pos * bs, (self.pos + 1) * bs)
            x, y = self.train_data.take(shard[part])
            arch_batch = self.train_data.take(self._arch_shard[part]) if self.learnable else None
            loss, hit = self.train_step(x, y, arch_batch)
            if self.last_arch:
                arch_steps += 1
                for k, v in self.last_arch.items():
                    arch_sums[k] = arch_sums.get(k, 0.0) + v
            lr = self.optimizer.param_groups[0]["lr"]
            loss_sum += loss.float()
            correct += hit
            samples += int(y.shape[0])
            self.pos += 1
            self.step += 1
            if self.trace:
                entry = {"step": self.step, "digest": parameter_digest(self.model), "path": self.mutator.status()}
                if self.learnable:
                    entry["arch_digest"] = parameter_digest(self.mutator)
                trace.append(entry)
        counts = {k: v.tolist() for k, v in self._counts.items()}
        self._reset_counts()
        return {
            "rank": self.rank,
            "epoch": self.epoch,
            "pos": self.pos,
            "step": self.step,
            "steps": n_steps,
            "samples": samples,
            "loss": float(loss_sum) / max(n_steps, 1),
            "accuracy": float(correct) / max(samples, 1),
            "lr": lr,
            "time_s": time.perf_counter() - start,
            "counts": counts,
            "fallbacks": int(getattr(self.mutator, "fallbacks", 0)),
            "trace": trace,
            "arch": {k: v / arch_steps for k, v in arch_sums.items()},
        }

    def end_epoch(self) -> None:
        """Finish the epoch: average BatchNorm statistics across replicas (if set), move on."""
        if self.pos != self.steps_per_epoch:
            raise RuntimeError(f"epoch {self.epoch} has {self.steps_per_epoch - self.pos} steps left")
        if self.distributed and self.world_size > 1 and self.config.bn_sync_buffers:
            self._reduce_mean([buf for buf in self.model.buffers() if buf.is_floating_point()])
        self.epoch += 1
        self.pos = 0
        self._shard = None
        self._arch_shard = None

    def rank_state(self) -> dict[str, Any]:
        """This rank's mutator and RNG states (one entry of a checkpoint's ``rank_states``)."""
        return to_cpu(
            {
                "mutator": self.mutator.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            }
        )

    def state(self, *, full: bool) -> dict[str, Any]:
        """``{"rank_state"}``, plus model / optimizer / scaler / epoch / step when ``full``;
        with a learnable mutator also ``"architecture"``, its exported architecture now."""
        out: dict[str, Any] = {"rank_state": self.rank_state()}
        if self.learnable:
            out["architecture"] = self.mutator.export()
        if full:
            out.update(
                to_cpu(
                    {
                        "model": self.model.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                    }
                )
            )
            out["epoch"] = self.epoch
            out["step"] = self.step
        return out

    def digest(self) -> str:
        """:func:`parameter_digest` of the replica's model."""
        return parameter_digest(self.model)

    def close(self) -> None:
        """Leave the process group (if any)."""
        if self.distributed:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()
            self.distributed = False
        if self._shm is not None:
            self._shm.close()
            self._shm = None
