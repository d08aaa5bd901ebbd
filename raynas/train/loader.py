"""How every phase reads a dataset: seeded shards, per-batch seeded transforms, DataLoaders.

- :class:`ShardSampler` is a batch sampler with ``DistributedSampler`` semantics: each epoch, a
  permutation seeded by ``(seed..., epoch)``, the same on every rank, is cut into ``world_size``
  disjoint equal shards (the remainder is dropped), and rank ``r`` reads shard ``r`` in full
  batches, so every rank takes the same number of steps. The batches depend only on the seed,
  the epoch, the rank and the position, so a resumed run reads exactly the batches an
  uninterrupted run reads.
- Each batch carries a seed (:class:`SeededBatch`). The item reads of a batch run with
  ``torch``'s, ``random``'s and ``numpy``'s global generators seeded by it (and restored after,
  so a read in the training process leaves its generators as they were): random per-sample
  transforms (crop, flip, ...) then give the same result with 0, 1 or 8 loader workers, on every
  resume, and across replicas.
- :class:`Loader` yields the batches on the device: a ``TensorDataset`` that fits is moved to
  the device once and indexed there (no loader); any other map-style dataset goes through a
  ``torch.utils.data.DataLoader`` with ``workers`` persistent worker processes, prefetching,
  and pinned memory with non-blocking copies on CUDA. With workers, a background thread
  (:class:`_Fetcher`) takes each batch off the workers' queue while the step computes: receiving
  a ready batch costs the training thread milliseconds (unpickling, the shared-memory handover),
  which the thread hides. A batch's input may be a tensor or a (nested) tuple / list / dict of
  tensors (:func:`raynas.nas.utils.to_device`).
"""

from __future__ import annotations

import functools
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from raynas.nas.utils import to_device

__all__ = ["SeededBatch", "ShardSampler", "OrderSampler", "Loader", "CachedBatches", "default_workers", "collate"]

#: a TensorDataset goes to a CUDA device whole when it takes at most this share of the free memory
_DEVICE_SHARE = 0.25


class SeededBatch(list):
    """The dataset indices of one batch, and the seed its item reads run under.

    Args:
        indices: the indices.
        seed: a 32-bit seed (``None``: the reads are not seeded).
    """

    def __init__(self, indices: Sequence[int], seed: int | None):
        super().__init__(indices.tolist() if isinstance(indices, np.ndarray) else (int(i) for i in indices))
        self.seed = seed

    def __reduce__(self) -> tuple:
        return SeededBatch, (list(self), self.seed)


@contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Seed torch's CPU, ``random``'s and numpy's global generators; restore them afterwards."""
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)


class _SeededItems(Dataset):
    """A dataset whose batches of items (``__getitems__``) are read under their batch's seed."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, batch: Sequence[int]) -> list[Any]:
        seed = getattr(batch, "seed", None)
        if seed is None:
            return [self.dataset[int(i)] for i in batch]
        with seeded_generators(seed):
            return [self.dataset[int(i)] for i in batch]


def collate(items: list[Any]) -> tuple[Any, Any]:
    """``default_collate`` of ``(x, y, ...)`` items; the batch ``(x, y)``."""
    batch = default_collate(items)
    return batch[0], batch[1]


class ShardSampler(Sampler[SeededBatch]):
    """This rank's batches of a seeded per-epoch permutation (``DistributedSampler`` semantics).

    Args:
        indices: the dataset indices to draw from (an ``int`` ``n``: ``range(n)``).
        batch_size: items per batch.
        seed: the integers that seed the permutations (the epoch is appended).
        rank: this replica's rank.
        world_size: number of replicas.

    Attributes:
        steps: full batches per epoch on every rank (0 when a shard holds less than one batch).
    """

    def __init__(
        self, indices: Sequence[int] | int, *, batch_size: int, seed: Sequence[int], rank: int = 0, world_size: int = 1
    ):
        self.indices = np.arange(indices) if isinstance(indices, int) else np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = [int(s) for s in seed]
        self.rank = rank
        self.world_size = world_size
        self.per_rank = len(self.indices) // world_size
        self.steps = self.per_rank // batch_size
        self.epoch = 0
        self.start = 0
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate over ``epoch``'s batches from position ``start`` on."""
        self.epoch, self.start = int(epoch), int(start)

    def _epoch(self, epoch: int) -> tuple[int, np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != epoch:
            perm = np.random.default_rng([*self.seed, int(epoch)]).permutation(self.indices)
            seeds = np.random.SeedSequence([*self.seed, int(epoch), self.rank]).generate_state(max(self.steps, 1))
            self._cached = (epoch, perm[self.rank * self.per_rank : (self.rank + 1) * self.per_rank], seeds)
        return self._cached

    def shard(self, epoch: int) -> np.ndarray:
        """This rank's indices in ``epoch`` (all of its batches, in order)."""
        return self._epoch(epoch)[1]

    def batch(self, epoch: int, pos: int) -> SeededBatch:
        """Batch ``pos`` of ``epoch``; its seed follows from the seed, the epoch, the rank and ``pos``."""
        _, shard, seeds = self._epoch(epoch)
        return SeededBatch(shard[pos * self.batch_size : (pos + 1) * self.batch_size], int(seeds[pos]))

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self) -> Iterator[SeededBatch]:
        epoch = self.epoch
        for pos in range(self.start, self.steps):
            yield self.batch(epoch, pos)


class OrderSampler(Sampler[SeededBatch]):
    """Batches of a fixed order (evaluation: the whole split in order, or chosen indices).

    Args:
        indices: the order (an ``int`` ``n``: ``range(n)``).
        batch_size: items per batch (the last batch may be smaller).
        seed: seeds the item reads (a batch's seed appends its position).
    """

    def __init__(self, indices: Sequence[int] | int, *, batch_size: int, seed: Sequence[int] = (0,)):
        self.indices = np.arange(indices) if isinstance(indices, int) else np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = [int(s) for s in seed]

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[SeededBatch]:
        seeds = np.random.SeedSequence(self.seed).generate_state(max(len(self), 1))
        for pos in range(len(self)):
            yield SeededBatch(self.indices[pos * self.batch_size : (pos + 1) * self.batch_size], int(seeds[pos]))


def default_workers() -> int:
    """Loader worker processes when ``data.workers`` is not set: the CPUs this process may use
    (those Ray assigned to the actor or trial, else the process's CPU affinity) minus the one that
    trains, at most 8."""
    cpus: float | None = None
    try:
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - no Ray, or a driver without assigned resources
        cpus = None
    if not cpus:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, int(cpus) - 1))


class _Fetcher:
    """Takes a DataLoader iterator's batches in a daemon thread, ``depth`` ahead, in order.

    The iterator is made in the caller's thread (a first ``iter()`` forks the workers; that stays
    on the main thread) and is used by this thread alone until :meth:`stop` returns. An error of
    the loader is raised by :meth:`get` in the consumer, with its own traceback.
    """

    END = object()

    def __init__(self, iterator: Iterator, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), name="raynas-batch-fetcher", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator: Iterator) -> None:
        try:
            for batch in iterator:
                if not self._put(batch):
                    return
            self._put(self.END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)

    def get(self) -> Any:
        """The next batch, or :attr:`END`; raises what the loader raised.

        Raises:
            RuntimeError: :meth:`stop` was called (a newer iteration of the loader took over).
        """
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self._stop.is_set():
                    raise RuntimeError("this iteration of the loader was stopped (a newer one took over)") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Stop taking batches; return once the thread is done with the iterator."""
        self._stop.set()
        self._thread.join()


def _fits(tensors: Sequence[torch.Tensor], device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return sum(t.numel() * t.element_size() for t in tensors) <= _DEVICE_SHARE * free


class Loader:
    """One dataset's batches, on the device, in the order of a batch sampler.

    Args:
        dataset: a map-style dataset of ``(x, y)`` items.
        sampler: yields :class:`SeededBatch` index lists (:class:`ShardSampler`, :class:`OrderSampler`).
        device: where the batches go.
        workers: DataLoader worker processes (``None``: :func:`default_workers`; 0: read in this
            process). Not used by the TensorDataset fast path.
        prefetch_factor: batches each worker reads ahead.

    Attributes:
        wait_s: seconds spent waiting for batches since the last :meth:`take_wait`.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: Sampler,
        *,
        device: torch.device,
        workers: int | None = None,
        prefetch_factor: int = 2,
    ):
        self.dataset = dataset
        self.sampler = sampler
        self.device = device
        self.wait_s = 0.0
        self.tensors: tuple[torch.Tensor, ...] | None = None
        self.loader: DataLoader | None = None
        self._fetcher: _Fetcher | None = None
        if isinstance(dataset, TensorDataset):
            fits = _fits(dataset.tensors, device)
            self.tensors = tuple(t.to(device) if fits else t for t in dataset.tensors)
            return
        self.workers = default_workers() if workers is None else int(workers)
        cuda = device.type == "cuda"
        self.loader = DataLoader(
            _SeededItems(dataset),
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=cuda,
            persistent_workers=self.workers > 0,
            prefetch_factor=prefetch_factor if self.workers > 0 else None,
            generator=torch.Generator(),  # the loader's own seed draw leaves the global generator alone
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        if self.tensors is not None:
            for index in self.sampler:
                idx = torch.as_tensor(index, dtype=torch.long, device=self.tensors[0].device)
                yield to_device(self.tensors[0][idx], self.device), to_device(self.tensors[1][idx], self.device)
            return
        fetcher = None
        if self.workers == 0:  # the reads run in this thread
            it = iter(self.loader)
            take: Callable[[], Any] = functools.partial(next, it, _Fetcher.END)
        else:
            self.stop()  # an earlier iteration left unfinished (its generator not yet collected)
            self._fetcher = fetcher = _Fetcher(iter(self.loader))
            take = fetcher.get
        try:
            while True:
                began = time.perf_counter()
                batch = take()
                self.wait_s += time.perf_counter() - began
                if batch is _Fetcher.END:
                    return
                x, y = batch
                yield to_device(x, self.device), to_device(y, self.device)
        finally:
            if fetcher is not None:
                fetcher.stop()

    def stop(self) -> None:
        """Stop the background fetch of an unfinished iteration (idempotent; the workers stay)."""
        if self._fetcher is not None:
            self._fetcher.stop()
            self._fetcher = None

    def take_wait(self) -> float:
        """The seconds waited for batches since the last call (and start again from 0)."""
        wait, self.wait_s = self.wait_s, 0.0
        return wait


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(t) for t in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(t) for t in obj.values())
    return 0


class CachedBatches:
    """A loader of a fixed order read once and kept (on the device) while it fits a byte budget;
    a larger one is read through the loader on every pass.

    Args:
        loader: the batches (a fixed order: every pass the same).
        budget: bytes kept at most.
    """

    def __init__(self, loader: Loader, *, budget: int = 512 << 20):
        self.loader = loader
        self.budget = budget
        self._cache: list[tuple[Any, torch.Tensor]] | None = None
        self._too_big = loader.tensors is not None  # the fast path needs no cache

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        if self._cache is not None:
            yield from self._cache
            return
        kept: list[tuple[Any, torch.Tensor]] | None = None if self._too_big else []
        size = 0
        for batch in self.loader:
            if kept is not None:
                size += _nbytes(batch)
                if size > self.budget:
                    kept, self._too_big = None, True
                else:
                    kept.append(batch)
            yield batch
        if kept is not None:
            self._cache = kept
