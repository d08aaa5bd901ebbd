"""How replicas stay in step: the process group and the ways to average gradients.

Every replica computes the same sums in the same order, so parameters stay bit-identical.
One interface, :class:`GradientSync` (after Lightning's ``Strategy``: one object owns the
collectives), and one implementation per path:

- :class:`NoSync`: one replica, nothing to average;
- :class:`FlatAllReduce`: one flat all-reduce of every gradient after backward, with presence
  flags (``independent`` sampling: replicas train different paths, so different parameter sets);
- :class:`BucketedAllReduce`: buckets all-reduced asynchronously as gradients become ready during
  backward (``shared`` sampling over gloo / nccl: the same path, so the same order everywhere);
- :class:`SharedMemoryAllReduce`: the flat path through a shared-memory buffer among the replicas
  of one node (:mod:`raynas.train._shm`); it costs microseconds and runs once, after backward.

:func:`choose_sync` owns the choice between them and the ``supernet.allreduce`` fallback
(``auto``: shared memory if every node can make its buffer, else the backend with a logged
reason; ``shm``: a :class:`ConfigError` instead). :func:`shm_capable` is its precondition,
asked of each replica before the driver plans the buffers (:func:`raynas.train.replicas.shm_plan`).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import platform
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from raynas.train._shm import ShmAllReduce, agree_everywhere, shm_path, shm_supported
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.resolve import resolve_device

__all__ = [
    "GradientSync",
    "NoSync",
    "FlatAllReduce",
    "BucketedAllReduce",
    "SharedMemoryAllReduce",
    "choose_sync",
    "shm_capable",
    "join_process_group",
    "leave_process_group",
]

_log = logging.getLogger(__name__)


class GradientSync(abc.ABC):
    """The replicas' collectives: average gradients and tensors, copy rank 0's values.

    Args:
        world_size: number of replicas.
    """

    #: how gradients are averaged: ``none``, ``gloo``, ``nccl`` or ``shm`` (``RunInfo.allreduce``)
    name = "none"

    def __init__(self, world_size: int):
        self.world_size = world_size

    @abc.abstractmethod
    def all_reduce(self, flat: torch.Tensor) -> None:
        """Sum a flat float32 tensor in place across the replicas."""

    @abc.abstractmethod
    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Copy rank 0's values into ``tensors`` on every replica."""

    @abc.abstractmethod
    def sync_gradients(self) -> None:
        """Average the parameters' gradients across the replicas (after the step's last backward)."""

    def before_last_backward(self) -> None:  # noqa: B027 - an optional hook: most syncs wait for the end
        """The step's last backward pass comes next (an overlapping sync starts reducing in it)."""

    def reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Average ``tensors`` in place across the replicas (one flat all-reduce)."""
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        self.all_reduce(flat)
        flat.div_(self.world_size)
        with torch.no_grad():
            for t, view in zip(tensors, flat.split([t.numel() for t in tensors])):
                t.copy_(view.view_as(t).to(t.dtype))

    @property
    def reduce(self) -> Callable[[list[torch.Tensor]], None] | None:
        """:meth:`reduce_mean` for :meth:`~raynas.nas.LearnableMutator.arch_step` (``None``: one replica)."""
        return self.reduce_mean

    def close(self) -> None:  # noqa: B027 - an optional hook: only a shared buffer needs closing
        """Release what the sync holds (a shared buffer)."""


class NoSync(GradientSync):
    """One replica (or replicas outside a process group): nothing is exchanged."""

    def all_reduce(self, flat: torch.Tensor) -> None:
        """Nothing to sum with."""

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """Nothing to copy from."""

    def sync_gradients(self) -> None:
        """The gradients are this replica's own."""

    def reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """The tensors stay as they are."""

    @property
    def reduce(self) -> None:
        """``None``: the mutator steps alone."""
        return None


class _ProcessGroupSync(GradientSync):
    """Collectives over the ``torch.distributed`` process group (gloo or nccl)."""

    def __init__(self, world_size: int):
        super().__init__(world_size)
        import torch.distributed as dist

        self.name = str(dist.get_backend())

    def all_reduce(self, flat: torch.Tensor) -> None:
        """``dist.all_reduce`` (sum)."""
        import torch.distributed as dist

        dist.all_reduce(flat)

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """``dist.broadcast`` from rank 0, tensor by tensor."""
        import torch.distributed as dist

        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)


class FlatAllReduce(_ProcessGroupSync):
    """One flat all-reduce of every gradient after backward, over the process group's backend.

    A parameter off this replica's path has no gradient: it sends zeros and a presence flag of 0;
    a parameter no replica touched keeps ``grad = None`` (so the optimizer leaves it alone).

    Args:
        params: the trainable parameters, in the same order on every replica.
        world_size: number of replicas.
        device: where the gradients live.
    """

    def __init__(self, params: list[nn.Parameter], world_size: int, device: torch.device):
        super().__init__(world_size)
        self.params = params
        self.numels = [p.numel() for p in params]
        self.device = device
        self._zeros = torch.zeros(max(self.numels, default=0), device=device)

    def sync_gradients(self) -> None:
        """Average every gradient (and whether any replica had one) in one call."""
        grads = [p.grad for p in self.params]
        pieces = [
            g.detach().reshape(-1).float() if g is not None else self._zeros[:n] for g, n in zip(grads, self.numels)
        ]
        flags = torch.tensor([0.0 if g is None else 1.0 for g in grads], device=self.device)
        flat = torch.cat(pieces + [flags])
        self.all_reduce(flat)
        total = flat.numel() - flags.numel()
        flat[:total].div_(self.world_size)
        views = flat.split(self.numels + [flags.numel()])
        touched = views[-1].tolist()
        for p, view, hit in zip(self.params, views, touched):
            p.grad = view.view_as(p).to(p.dtype) if hit > 0 else None


class SharedMemoryAllReduce(FlatAllReduce):
    """:class:`FlatAllReduce` through one node's shared buffer (an attached :class:`ShmAllReduce`)."""

    def __init__(self, reducer: ShmAllReduce, params: list[nn.Parameter], world_size: int, device: torch.device):
        super().__init__(params, world_size, device)
        self.name = "shm"
        self.reducer = reducer

    def all_reduce(self, flat: torch.Tensor) -> None:
        """Sum in the shared buffer (and across nodes through their leaders)."""
        self.reducer.all_reduce(flat)

    def close(self) -> None:
        """Drop the buffer's mapping."""
        self.reducer.close()


class BucketedAllReduce(_ProcessGroupSync):
    """Gradient all-reduce overlapped with backward (``shared`` sampling over gloo / nccl).

    Every replica runs the same path through the same graph, so the gradients become ready in the
    same order everywhere; buckets of about :attr:`BUCKET` elements are all-reduced asynchronously
    as they fill, while the rest of the backward pass runs.

    Args:
        params: the trainable parameters (a hook is registered on each).
        world_size: number of replicas.
    """

    BUCKET = 4096

    def __init__(self, params: list[nn.Parameter], world_size: int):
        super().__init__(world_size)
        self.params = params
        self._active = False
        self._bucket: list[nn.Parameter] = []
        self._bucket_numel = 0
        self._pending: list[tuple[Any, torch.Tensor, list[nn.Parameter]]] = []
        self._reduced: set[int] = set()
        for p in params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    def before_last_backward(self) -> None:  # noqa: B027 - an optional hook: most syncs wait for the end
        """Reduce the gradients of the coming backward pass as they become ready."""
        self._active = True

    def _on_grad_ready(self, p: torch.Tensor) -> None:
        if not self._active:
            return
        self._bucket.append(p)
        self._bucket_numel += p.numel()
        if self._bucket_numel >= self.BUCKET:
            self._flush()

    def _flush(self) -> None:
        import torch.distributed as dist

        if not self._bucket:
            return
        params = self._bucket
        flat = torch.cat([p.grad.detach().reshape(-1).float() for p in params])
        self._pending.append((dist.all_reduce(flat, async_op=True), flat, params))
        self._reduced.update(id(p) for p in params)
        self._bucket, self._bucket_numel = [], 0

    def sync_gradients(self) -> None:
        """Flush the last bucket, wait for every bucket, and write the averages back."""
        self._active = False
        self._flush()
        # gradients of earlier paths of the step (fair sampling) that the last backward missed
        self._bucket = [p for p in self.params if p.grad is not None and id(p) not in self._reduced]
        self._flush()
        for work, flat, params in self._pending:
            work.wait()
            flat.div_(self.world_size)
            for p, view in zip(params, flat.split([p.numel() for p in params])):
                p.grad = view.view_as(p).to(p.dtype)
        self._pending, self._reduced = [], set()


def shm_capable(config: SupernetConfig) -> bool:
    """Whether a replica can average gradients through shared memory (``allreduce`` ``auto`` /
    ``shm``, CPU training on x86-64).

    Raises:
        ConfigError: ``allreduce`` is ``shm`` but this replica cannot use it.
    """
    mode = config.allreduce
    if mode == "backend":
        return False
    reason = None
    if resolve_device(config).type != "cpu":
        reason = "it needs CPU training (CUDA replicas use nccl)"
    elif not shm_supported():
        reason = f"it needs an x86-64 machine, this one is {platform.machine()!r}"
    if reason is not None and mode == "shm":
        raise ConfigError(f"supernet.allreduce is 'shm' but {reason}; use 'auto' or 'backend'")
    return reason is None


def _shm_capacity(params: list[nn.Parameter], model: nn.Module, mutator: nn.Module) -> int:
    """The largest flat reduction: gradients and their presence flags, BatchNorm statistics,
    architecture gradients and ENAS' reward."""
    numels = [p.numel() for p in params]
    return max(
        sum(numels) + len(numels),
        sum(b.numel() for b in model.buffers() if b.is_floating_point()),
        sum(p.numel() for p in mutator.parameters()) + 8,
    )


def choose_sync(
    config: SupernetConfig,
    *,
    world_size: int,
    distributed: bool,
    device: torch.device,
    model: nn.Module,
    mutator: nn.Module,
    shm: Mapping[str, Any] | None = None,
) -> GradientSync:
    """The gradient sync of one replica (every replica calls it at once: it may take collectives).

    Args:
        config: ``allreduce``, ``sampling``, ``dist_timeout_s``.
        world_size: number of replicas.
        distributed: whether the replica joined a process group (:func:`join_process_group`).
        device: the training device.
        model: the supernet (its trainable parameters are synced, in this order).
        mutator: the mutator (its parameters size the shared buffer).
        shm: the shared-memory plan of :func:`join_process_group` (``None``: the backend).

    Returns:
        :class:`NoSync` for one replica; else :class:`SharedMemoryAllReduce` when ``shm`` is
        planned and every node made its buffer; else :class:`BucketedAllReduce` for ``shared``
        sampling and :class:`FlatAllReduce` for ``independent`` sampling.

    Raises:
        ConfigError: ``allreduce`` is ``shm`` and some node could not make its buffer (``auto``
            logs the reason and falls back to the backend).
    """
    if not (distributed and world_size > 1):
        return NoSync(world_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if shm is not None:
        import torch.distributed as dist

        reducer = ShmAllReduce(
            path=shm_path(shm["name"]),
            local_rank=int(shm["local_rank"]),
            local_size=int(shm["local_size"]),
            capacity=_shm_capacity(params, model, mutator),
            timeout_s=config.dist_timeout_s,
            leaders=shm.get("group"),
        )
        # local rank 0 creates the buffer, every rank maps it, then the name is removed:
        # nothing is left behind, even when a replica is killed
        if reducer.attach(agree_everywhere):
            return SharedMemoryAllReduce(reducer, params, world_size, device)
        detail = reducer.error or "another replica could not make its node's shared buffer"
        if config.allreduce == "shm":
            raise ConfigError(f"supernet.allreduce is 'shm' but {detail}; use 'auto' or 'backend'")
        _log.warning(
            "shared-memory all-reduce unavailable (%s); averaging gradients over %s", detail, dist.get_backend()
        )
    if config.sampling == "shared":
        return BucketedAllReduce(params, world_size)
    return FlatAllReduce(params, world_size, device)


def join_process_group(
    config: SupernetConfig, *, rank: int, world_size: int, init_method: str, shm: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Join the replicas' process group (gloo on CPU, nccl on CUDA).

    Args:
        config: ``device`` and ``dist_timeout_s``.
        rank: this replica's rank.
        world_size: number of replicas.
        init_method: the rendezvous address (``tcp://ip:port``).
        shm: average gradients through shared memory on this node: ``{"name", "local_rank",
            "local_size", "leaders"}`` (``leaders``: the ranks of every node's first replica,
            ``None`` when all replicas share one node).

    Returns:
        The shared-memory plan for :func:`choose_sync` (with ``"group"``, the leaders' process
        group, when there are several nodes), or ``None``.
    """
    import torch.distributed as dist

    backend = "nccl" if resolve_device(config).type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=config.dist_timeout_s),
    )
    spec = dict(shm) if shm is not None else None
    if spec is not None and spec.get("leaders") is not None:
        # every rank takes part in making the group, members or not
        spec["group"] = dist.new_group(ranks=list(spec["leaders"]))
    return spec


def leave_process_group() -> None:
    """Leave the process group (errors of a group already broken are ignored)."""
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        dist.destroy_process_group()
