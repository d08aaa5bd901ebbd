"""The data a replica trains on: where it comes from, its batches, its shard, its steps per epoch.

raynas follows NNI's convention: a dataset item is ``(x, y)``; ``x`` may be a tensor or a nested
tuple / list / dict of tensors (NNI's TextNAS reads ``((ids, mask), label)``); a batch is what
``default_collate`` makes of the items, moved to the device recursively (NNI's
``nni.nas.pytorch.utils.to_device``), and the model is called with the whole input as one
argument, ``model(x)``, never ``model(*x)``.

Each epoch, a seeded permutation of the training split (the same on every rank) is cut into
``world_size`` disjoint, equal shards; rank ``r`` trains on shard ``r`` in batches of
``batch_size`` (an incomplete last batch is dropped, so every rank takes the same number of
steps). With a learnable mutator the split is first cut into two seeded halves (weights /
architecture), each sharded the same way (:class:`ReplicaShards`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from raynas.nas.utils import batch_size, first_examples, snapshot, to_device  # noqa: F401 (re-exported)
from raynas.train.config import ConfigError, SupernetConfig

__all__ = [
    "Batches",
    "ReplicaShards",
    "data_factory",
    "resolve_data",
    "steps_per_epoch",
    "to_device",
    "batch_size",
    "first_examples",
    "snapshot",
]


def data_factory(data: Any, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Where the data comes from, as what travels to replicas and trials (read by :func:`resolve_data`).

    Args:
        data: a mapping of split -> dataset (returned as is), a callable returning one,
            ``"package.module:function"``, or a built-in's name (its ``load_data``).
        kwargs: keyword arguments bound to the function (a picklable partial).

    Raises:
        ValueError: an unknown built-in, or a string that does not import.
    """
    if isinstance(data, str):
        if ":" in data:
            from raynas.nas.space import load_factory

            data = load_factory(data)
        else:
            from raynas.zoo import builtin

            data = builtin(data).load_data
    if kwargs and callable(data) and not isinstance(data, Mapping):
        data = functools.partial(data, **kwargs)
    return data


def resolve_data(data: Any, kwargs: Mapping[str, Any] | None = None) -> Mapping[str, Dataset]:
    """The one way to the data splits: anything :func:`data_factory` takes, called when it is a function.

    Raises:
        KeyError: the splits have no ``train`` entry.
        TypeError: the data is neither a mapping nor something that returns one.
    """
    data = data_factory(data, kwargs)
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
    """Steps each replica takes per epoch (every rank the same).

    Raises:
        ConfigError: a batch is larger than a replica's shard.
    """
    steps = (n_train // world_size) // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"supernet.batch_size={config.batch_size} is larger than a replica's shard "
            f"({n_train} training samples / {world_size} replicas)"
        )
    return steps


class Batches:
    """Batches of a dataset by index: a TensorDataset is indexed directly (its tensors moved to the
    device once), any other dataset's items are collated with ``default_collate``.

    Args:
        dataset: items ``(x, y)``; ``x`` a tensor or a tuple / list / dict of tensors.
        device: where :meth:`take` puts the batch (recursively, see :func:`to_device`).
    """

    def __init__(self, dataset: Dataset, device: torch.device):
        self.dataset = dataset
        self.device = device
        self.tensors = tuple(t.to(device) for t in dataset.tensors) if isinstance(dataset, TensorDataset) else None

    def __len__(self) -> int:
        return len(self.dataset)

    def take(self, index: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The batch ``(x, y)`` of the items at ``index`` (a 1-D integer tensor), on the device."""
        if self.tensors is not None:
            idx = index.to(self.device)
            x, y = self.tensors[0][idx], self.tensors[1][idx]
        else:
            x, y = default_collate([self.dataset[int(i)] for i in index])[:2]
            x, y = to_device(x, self.device), to_device(y, self.device)
        return x, y

    def batches(self, size: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """The whole dataset in order, ``size`` items per batch (the last one may be smaller)."""
        idx = torch.arange(len(self))
        for i in range(0, len(self), size):
            yield self.take(idx[i : i + size])


class ReplicaShards:
    """One replica's share of the training split, epoch by epoch.

    Args:
        n_train: size of the training split.
        config: ``seed`` and ``batch_size``.
        rank: this replica's rank.
        world_size: number of replicas.
        learnable: cut the split into a weight half and an architecture half first (the same
            seeded halves on every rank, :func:`raynas.nas.learnable.split_halves`).

    Raises:
        ConfigError: a batch is larger than a replica's shard.
    """

    def __init__(self, n_train: int, config: SupernetConfig, *, rank: int, world_size: int, learnable: bool):
        self.seed = config.seed
        self.batch_size = config.batch_size
        self.rank = rank
        self.world_size = world_size
        self.halves: tuple[np.ndarray, np.ndarray] | None = None
        if learnable:
            from raynas.nas.learnable import split_halves

            self.halves = split_halves(n_train, config.seed)
            self.steps_per_epoch = steps_per_epoch(len(self.halves[0]), config, world_size)
        else:
            self.steps_per_epoch = steps_per_epoch(n_train, config, world_size)
        self.n_train = n_train
        self._epoch: int | None = None
        self._shard: torch.Tensor | None = None
        self._arch_shard: torch.Tensor | None = None

    def _mine(self, perm: np.ndarray) -> torch.Tensor:
        per = len(perm) // self.world_size
        return torch.from_numpy(perm[self.rank * per : (self.rank + 1) * per])

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's training indices in ``epoch`` (the weight half's with a learnable mutator)."""
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, 0xDA7A, epoch])
            if self.halves is None:
                self._shard = self._mine(rng.permutation(self.n_train))
                self._arch_shard = None
            else:
                weight = rng.permutation(self.halves[0])
                self._arch_shard = self._mine(rng.permutation(self.halves[1]))
                self._shard = self._mine(weight)
            self._epoch = epoch
        return self._shard

    def batch_indices(self, epoch: int, pos: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The indices of batch ``pos`` of ``epoch``: ``(weight batch, architecture batch or None)``."""
        shard = self.shard(epoch)
        part = slice(pos * self.batch_size, (pos + 1) * self.batch_size)
        return shard[part], (self._arch_shard[part] if self._arch_shard is not None else None)
