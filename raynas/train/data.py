"""The data of every phase: where it comes from (:class:`DataSpec`), and a replica's share of it.

raynas follows NNI's convention: a dataset is any map-style ``torch.utils.data.Dataset`` whose
item is ``(x, y)``; ``x`` may be a tensor or a nested tuple / list / dict of tensors (NNI's TextNAS
reads ``((ids, mask), label)``); a batch is what ``default_collate`` makes of the items, moved to
the device recursively (NNI's ``nni.nas.pytorch.utils.to_device``), and the model is called with
the whole input as one argument, ``model(x)``, never ``model(*x)``.

The data travels to replicas and trials as a :class:`DataSpec` (an import path and its keyword
arguments, loader settings): each process builds the datasets itself and reads them through
:class:`raynas.train.loader.Loader` (DataLoader workers, or the TensorDataset fast path).

Each epoch, a seeded permutation of the training split (the same on every rank) is cut into
``world_size`` disjoint, equal shards; rank ``r`` trains on shard ``r`` in batches of
``batch_size`` (an incomplete last batch is dropped, so every rank takes the same number of
steps; :class:`~raynas.train.loader.ShardSampler`). With a learnable mutator the training split is
first cut as NNI's ``DartsTrainer`` cuts it: the weights train on its first half, the
architecture on the second (:func:`split_halves`), each sharded the same way (:class:`ReplicaData`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, TensorDataset, default_collate

from raynas.nas.learnable import split_halves
from raynas.nas.utils import to_device
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.loader import Loader, ShardSampler
from searchers.errors import ConfigTypeError

__all__ = [
    "Batches",
    "DataSpec",
    "ReplicaData",
    "as_data_spec",
    "check_data",
    "data_factory",
    "resolve_data",
    "steps_per_epoch",
    "first_examples",
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


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is read: what travels to replicas and trials, which
    build the datasets themselves (nothing is shipped from the driver but this).

    Args:
        source: ``"package.module:function"`` or a built-in's name (imported and called in each
            process), a callable returning ``{"train": Dataset, "val": ..., "test": ...}``, or
            that mapping itself (Python API; it is pickled to each process).
        kwargs: keyword arguments for the function.
        workers: DataLoader worker processes per replica / trial (``None``: the CPUs Ray gives
            it minus one, at most 8; 0: read in the training process).
        prefetch_factor: batches each worker reads ahead.
    """

    source: Any
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    workers: int | None = None
    prefetch_factor: int = 2

    def splits(self) -> Mapping[str, Dataset]:
        """The datasets (:func:`resolve_data`), built in the calling process."""
        return resolve_data(self.source, self.kwargs)

    def loader(self, dataset: Dataset, sampler: Sampler, device: torch.device) -> Loader:
        """A :class:`~raynas.train.loader.Loader` of ``dataset`` in ``sampler``'s order, with these settings."""
        return Loader(dataset, sampler, device=device, workers=self.workers, prefetch_factor=self.prefetch_factor)


def check_data(source: Any, kwargs: Mapping[str, Any] | None = None, *, key: str = "data") -> None:
    """The cheap pre-flight of a data source, in the driver before anything is written: it imports,
    ``kwargs`` fit the function's parameters, and the function's optional ``check`` hook passes.

    A data function (a plain function, not a class) may carry a ``check`` attribute, called with
    the same keyword arguments, that checks what it can without building the data (files present,
    values in range) and raises :class:`~searchers.errors.ConfigError`;
    ``raynas.zoo.cifar10.load_data`` has one. Without it, only the import and the arguments are
    checked here; everything else fails where the data is built.

    Args:
        source: what :func:`data_factory` takes (a mapping of splits is accepted as is).
        kwargs: the keyword arguments the function will be called with.
        key: the config key the message names (``data`` -> ``data.name``, ``data.kwargs``).

    Raises:
        ConfigError: a name that does not import, arguments the function does not take, or what
            the ``check`` hook raises.
    """
    function = data_factory(source)
    if isinstance(function, Mapping) or not callable(function):
        return
    kwargs = dict(kwargs or {})
    try:
        inspect.signature(function).bind(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{key}.kwargs {kwargs!r} do not fit {key}.name {source!r}: {error}") from None
    except ValueError:  # no signature to read (a builtin): its call will say
        pass
    hook = getattr(function, "check", None) if inspect.isfunction(function) else None  # a class's .check is its own
    if callable(hook):
        hook(**kwargs)


def as_data_spec(data: Any) -> DataSpec:
    """``data`` as a :class:`DataSpec` (anything :func:`data_factory` takes gets the default loader settings)."""
    return data if isinstance(data, DataSpec) else DataSpec(source=data)


def resolve_data(data: Any, kwargs: Mapping[str, Any] | None = None) -> Mapping[str, Dataset]:
    """The one way to the data splits: a :class:`DataSpec` or anything :func:`data_factory` takes,
    called when it is a function.

    Raises:
        ConfigError: the splits have no ``train`` entry.
        ConfigTypeError: the data is neither a mapping nor something that returns one.
    """
    if isinstance(data, DataSpec):
        data, kwargs = data.source, {**data.kwargs, **(kwargs or {})}
    data = data_factory(data, kwargs)
    if callable(data) and not isinstance(data, Mapping):
        data = data()
    if not isinstance(data, Mapping):
        raise ConfigTypeError(
            f"data must be a mapping of split -> dataset or a callable returning one, got {type(data).__name__}"
        )
    if "train" not in data:
        raise ConfigError(f"the data has no 'train' split (splits: {', '.join(map(str, data)) or 'none'})")
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


def first_examples(x: Any, n: int) -> Any:
    """The first ``n`` examples of a batch of any structure (every tensor sliced along dim 0)."""
    if isinstance(x, torch.Tensor):
        return x[:n] if x.dim() > 0 else x
    if isinstance(x, tuple):
        items = [first_examples(t, n) for t in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [first_examples(t, n) for t in x]
    if isinstance(x, Mapping):
        return {k: first_examples(v, n) for k, v in x.items()}
    return x


class Batches:
    """Batches of a dataset by index, read in this process (examples, small splits): a
    TensorDataset is indexed directly (its tensors moved to the device once), any other dataset's
    items are collated with ``default_collate``. Training and evaluation read through
    :class:`raynas.train.loader.Loader`.

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


class ReplicaData:
    """One replica's training batches, epoch by epoch, through DataLoaders.

    Args:
        train: the training split.
        config: ``seed`` and ``batch_size``.
        spec: the loader settings.
        device: where the batches go.
        rank: this replica's rank.
        world_size: number of replicas.
        learnable: train the weights on the first half of the split and the architecture on the
            second (:func:`split_halves`); :meth:`next` then gives a batch of each.

    Raises:
        ConfigError: a batch is larger than a replica's shard.
    """

    def __init__(
        self,
        train: Dataset,
        config: SupernetConfig,
        *,
        spec: DataSpec,
        device: torch.device,
        rank: int,
        world_size: int,
        learnable: bool,
    ):
        n = len(train)
        weight_idx, arch_idx = split_halves(n) if learnable else (n, None)
        self.steps_per_epoch = steps_per_epoch(n // 2 if learnable else n, config, world_size)
        common = dict(batch_size=config.batch_size, rank=rank, world_size=world_size)
        self.sampler = ShardSampler(weight_idx, seed=[config.seed, 0xDA7A], **common)
        self.loader = spec.loader(train, self.sampler, device)
        self.arch_sampler = self.arch_loader = None
        if arch_idx is not None:
            self.arch_sampler = ShardSampler(arch_idx, seed=[config.seed, 0xA4C4], **common)
            self.arch_loader = spec.loader(train, self.arch_sampler, device)
        self._it: Iterator | None = None
        self._at: tuple[int, int] | None = None

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's training indices in ``epoch`` (the weight half's with a learnable mutator)."""
        return torch.from_numpy(self.sampler.shard(epoch))

    def next(self, epoch: int, pos: int) -> tuple[tuple[Any, Any], tuple[Any, Any] | None]:
        """Batch ``pos`` of ``epoch``: ``(weight batch, architecture batch or None)``, on the device."""
        if self._at != (epoch, pos):
            self._start(epoch, pos)
        batch = next(self._it)
        self._at = (epoch, pos + 1)
        return batch

    def _start(self, epoch: int, pos: int) -> None:
        self.sampler.set_epoch(epoch, pos)
        if self.arch_sampler is None:
            self._it = ((b, None) for b in self.loader)
        else:
            self.arch_sampler.set_epoch(epoch, pos)
            self._it = zip(self.loader, self.arch_loader)

    def end_epoch(self) -> None:
        """Drop the epoch's iterator (the loaders' workers stay for the next epoch)."""
        self._it, self._at = None, None

    def take_wait(self) -> float:
        """Seconds the training waited for batches since the last call."""
        wait = self.loader.take_wait()
        return wait + (self.arch_loader.take_wait() if self.arch_loader is not None else 0.0)
