"""All-reduce through shared memory among the replicas of one node.

Gloo's TCP all-reduce costs ~1-2 ms per call between two processes on one small machine (more when
every core is busy with training), which is as long as a whole training step of a small supernet.
Replicas on the same node instead meet in one shared-memory file. A call:

1. each rank copies its tensor into its own slot of this call's half of the buffer (calls
   alternate between two halves, so a call never overwrites what a slower rank still reads);
2. barrier;
3. one node: each rank sums every slot, in rank order, into its tensor. Several nodes: the node's
   first rank sums the slots into the half's result buffer and all-reduces it with the other
   nodes' first ranks over the process group's backend; barrier; each rank copies the result out.

Every rank computes the same sum in the same order (or reads the same bytes), so the replicas stay
bit-identical. A barrier is one generation number per rank, each on its own cache line, written
after the data and polled by the others (spinning, then yielding the core, then sleeping). That
relies on the processor keeping stores in order (x86-64's total store order), so
:func:`shm_supported` is false elsewhere and the backend's all-reduce is used instead.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "SharedMemoryTimeout",
    "ShmAllReduce",
    "agree_everywhere",
    "shm_dir",
    "shm_name",
    "shm_path",
    "shm_supported",
]

_LINE = 8  # int64 per cache line: one rank's flag per line
_ALIGN = 64


class SharedMemoryTimeout(RuntimeError):
    """A peer did not reach a shared-memory all-reduce in time (it died or hangs)."""


def shm_supported() -> bool:
    """Whether this machine can run :class:`ShmAllReduce` (x86-64: stores are seen in order)."""
    return platform.machine().lower() in ("x86_64", "amd64") and os.name == "posix"


def agree_everywhere(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank of the default ``torch.distributed`` group (called by
    every rank; an all-reduce MIN, so also a barrier): the ``agree`` of :meth:`ShmAllReduce.attach`."""
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def shm_name() -> str:
    """A fresh name for one node's shared buffer (made by the driver, resolved on the node)."""
    return f"raynas-allreduce-{uuid.uuid4().hex}"


def shm_dir() -> str:
    """Where this machine keeps the shared buffers: ``/dev/shm`` when there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def shm_path(name: str) -> str:
    """Where the buffer ``name`` lives on this machine (in :func:`shm_dir`)."""
    return os.path.join(shm_dir(), name)


class ShmAllReduce:
    """Sum-all-reduce of float32 tensors of up to ``capacity`` elements among ``local_size``
    processes of one node, optionally combined across nodes by the node leaders.

    Args:
        path: the shared file (the same for every local rank; see :func:`shm_path`).
        local_rank: this process's index on the node (0 creates the file).
        local_size: processes on the node.
        capacity: the largest tensor (elements) that will be reduced.
        timeout_s: how long a barrier waits for its peers before raising
            :class:`SharedMemoryTimeout`.
        leaders: a ``torch.distributed`` group of the nodes' first ranks (``None``: one node).
    """

    def __init__(
        self, *, path: str, local_rank: int, local_size: int, capacity: int, timeout_s: float, leaders: Any = None
    ):
        self.path = path
        self.local_rank = local_rank
        self.local_size = local_size
        self.capacity = int(capacity)
        self.timeout_s = timeout_s
        self.leaders = leaders
        self._generation = 0
        self._slot_bytes = -(-self.capacity * 4 // _ALIGN) * _ALIGN
        self._flags_bytes = local_size * _LINE * 8
        self._calls = 0
        self._created = False
        self.error = ""
        self.nbytes = self._flags_bytes + 2 * (local_size + 1) * self._slot_bytes

    def attach(self, agree: Callable[[bool], bool]) -> bool:
        """Create (local rank 0), map (every rank) and unlink (local rank 0) the buffer.

        Args:
            agree: called by every rank of every node with whether its part went well; returns
                whether it went well everywhere (e.g. an all-reduce MIN over the process group).
                It is also the barrier between the parts.

        Returns:
            ``True`` when every rank mapped its node's buffer. ``False`` (nothing left on disk)
            when some node could not make it, e.g. its ``/dev/shm`` is too small (Docker's
            default is 64 MB): the space is reserved up front, so a full ``/dev/shm`` shows here
            and not as a crash mid-training.
        """
        made = self.local_rank != 0 or self._try(self.create, f"make {self.nbytes} bytes at {self.path}")
        if agree(made):
            if agree(self._try(self.open, f"map {self.path}")):
                if self.local_rank == 0:
                    self.unlink()
                return True
            self.close()
        if self._created:
            self.unlink()
        return False

    def _try(self, step: Callable[[], None], what: str) -> bool:
        try:
            step()
        except OSError as exc:
            self.error = f"could not {what}: {exc}"
            return False
        return True

    def create(self) -> None:
        """Create the zero-filled file with its pages reserved (local rank 0, before the others
        :meth:`open` it).

        Raises:
            OSError: the file exists, or there is not enough space for it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._created = True
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, self.nbytes)  # ENOSPC now rather than SIGBUS on a write
            else:  # pragma: no cover - macOS
                os.ftruncate(fd, self.nbytes)
        except OSError:
            os.close(fd)
            self.unlink()
            raise
        os.close(fd)

    def open(self) -> None:
        """Map the file."""
        mem = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(self.nbytes,))
        self._mem = mem
        self._flags = np.ndarray((self.local_size, _LINE), dtype=np.int64, buffer=mem, offset=0)
        slots = 2 * (self.local_size + 1)
        data = torch.from_numpy(
            np.ndarray((slots * self._slot_bytes // 4,), dtype=np.float32, buffer=mem, offset=self._flags_bytes)
        )
        self._slots = data.view(2, self.local_size + 1, self._slot_bytes // 4)[:, :, : self.capacity]

    def unlink(self) -> None:
        """Remove the file name (the mappings stay valid); call once every rank has opened it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _barrier(self) -> None:
        self._generation += 1
        gen = self._generation
        flags = self._flags
        flags[self.local_rank, 0] = gen
        spins = 0
        start = None
        while flags[:, 0].min() < gen:
            spins += 1
            if spins < 50:
                continue
            if start is None:
                start = time.monotonic()
            waited = time.monotonic() - start
            if waited > self.timeout_s:
                late = [r for r in range(self.local_size) if flags[r, 0] < gen]
                raise SharedMemoryTimeout(
                    f"shared-memory all-reduce timed out after {self.timeout_s:g} s waiting for local ranks {late}"
                )
            if waited < 0.05:
                os.sched_yield()
            else:
                time.sleep(0.0005)

    def all_reduce(self, flat: torch.Tensor) -> None:
        """Sum ``flat`` (a contiguous float32 CPU tensor) in place across every rank."""
        n = flat.numel()
        if n > self.capacity:
            raise ValueError(f"all_reduce of {n} elements exceeds the shared buffer's capacity {self.capacity}")
        slots = self._slots[self._calls % 2]
        self._calls += 1
        slots[self.local_rank, :n].copy_(flat)
        self._barrier()
        if self.leaders is None:
            flat.copy_(slots[0, :n])
            for r in range(1, self.local_size):
                flat.add_(slots[r, :n])
            return
        result = slots[self.local_size, :n]
        if self.local_rank == 0:
            import torch.distributed as dist

            result.copy_(slots[0, :n])
            for r in range(1, self.local_size):
                result.add_(slots[r, :n])
            dist.all_reduce(result, group=self.leaders)
        self._barrier()
        flat.copy_(result)

    def close(self) -> None:
        """Drop the mapping."""
        self._slots = self._flags = None  # type: ignore[assignment]
        self._mem = None
