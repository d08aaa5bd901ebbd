"""What every raynas one-shot trainer shares: raynas' extra keywords, the epoch loop, the trainer's
state, and the hooks through which its training steps run on Ray replicas.

A trainer's work is a list of *units* (an epoch; ProxylessNAS also has warm-up epochs). In the
calling process (``replicas=1``, the default) :meth:`ReplicableTrainer.run_units` runs each unit
with the trainer's own code, exactly as NNI does. With ``replicas > 1`` it hands the units to
:func:`raynas.train.trainer_replica.run_replicated` (imported only then, so ``raynas.nas`` does not
load ``raynas.train``): Ray actors each hold an unpickled copy of the trainer and run the same
unit code on a shard of the data, with gradients averaged across replicas at the hooks below;
the caller's trainer stays the authority: it sends its state before each unit, loads rank 0's
state after it, and runs validation, callbacks, ``export`` and checkpoints itself.

The hooks a trainer's step code calls (each does NNI's plain thing in the calling process):

- :meth:`~ReplicableTrainer.backward_weights`: ``loss.backward()``, then the weights' gradients
  averaged across replicas;
- :meth:`~ReplicableTrainer.reduce_mean`: average tensors in place (architecture gradients);
- :meth:`~ReplicableTrainer.mean_value`: average a number (ENAS' reward);
- :meth:`~ReplicableTrainer.subset_loader` / :meth:`~ReplicableTrainer.shard_loader`: NNI's
  DataLoaders, or this replica's shard of them;
- :meth:`~ReplicableTrainer.step_done`: the end of a step (replicas record parameter digests there
  when ``trace=True``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, SubsetRandomSampler

from raynas.nas.utils import AverageMeterGroup, init_standalone_logger
from searchers.errors import ConfigError

__all__ = ["TrainerOptions", "ReplicableTrainer", "ALLREDUCES"]

_logger = logging.getLogger(__name__)

#: how replicas average gradients (as ``supernet.allreduce``)
ALLREDUCES = ("auto", "shm", "backend")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class TrainerOptions:
    """raynas' extra keywords of every trainer (none of them is NNI's).

    Attributes:
        replicas: data-parallel replicas; 1 trains in the calling process as NNI does, more train
            on Ray actors kept in step by gradient all-reduce.
        address: the Ray cluster to join (``ray.init(address=...)``) when Ray is not running yet;
            ``None``: a local Ray.
        cpus_per_replica: Ray CPUs reserved per replica actor (as ``supernet.cpus_per_replica``).
        threads: torch threads per replica (as ``supernet.threads``).
        allreduce: ``auto``, ``shm`` or ``backend`` (as ``supernet.allreduce``).
        max_failures: restarts of the replicas after a failure before giving up.
        dist_timeout_s: timeout of the replicas' collectives.
        seed: seeds each replica unit's RNGs and data order (replicas only).
        checkpoint_dir: when set, the trainer writes a checkpoint after every epoch under
            ``<checkpoint_dir>/checkpoints`` (``last.pt``; see :meth:`ReplicableTrainer.checkpoint`).
        trace: replicas record every step's parameter digests (``trainer.replica_trace``).
    """

    replicas: int = 1
    address: str | None = None
    cpus_per_replica: float = 1.0
    threads: int = 1
    allreduce: str = "auto"
    max_failures: int = 3
    dist_timeout_s: float = 120.0
    seed: int = 0
    checkpoint_dir: str | None = None
    trace: bool = False

    def __post_init__(self) -> None:
        for name, minimum in (("replicas", 1), ("threads", 1), ("max_failures", 0), ("seed", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ConfigError(f"trainer option {name} must be an integer >= {minimum}, got {value!r}")
        for name, strict in (("cpus_per_replica", False), ("dist_timeout_s", True)):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or (strict and value == 0):
                raise ConfigError(f"trainer option {name} must be a number {'>' if strict else '>='} 0, got {value!r}")
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"trainer option address must be a Ray address string or None, got {self.address!r}")
        if self.allreduce not in ALLREDUCES:
            raise ConfigError(
                f"trainer option allreduce must be one of {', '.join(ALLREDUCES)}, got {self.allreduce!r}"
            )
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))
        if not isinstance(self.trace, bool):
            raise ConfigError(f"trainer option trace must be True or False, got {self.trace!r}")

    @classmethod
    def from_kwargs(cls, owner: str, kwargs: Mapping[str, Any]) -> TrainerOptions:
        """The options from a trainer's extra keyword arguments.

        Raises:
            ConfigError: an unknown keyword (the valid ones are listed) or a bad value.
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in valid:
                raise ConfigError(
                    f"{owner} got an unknown keyword argument {key!r} (raynas' extras: {', '.join(valid)})"
                )
        return cls(**dict(kwargs))


class ReplicableTrainer:
    """The epoch loop, state and replica hooks shared by raynas' trainers (see the module docstring).

    Subclasses call :meth:`setup_replicas` in ``__init__`` and implement :meth:`units`,
    :meth:`run_unit`, :meth:`stateful` and :meth:`build_loaders`; :meth:`begin_unit` and
    :meth:`end_unit` do nothing by default.

    Attributes:
        options: the :class:`TrainerOptions`.
        history: one ``{"unit": ..., metric: average}`` per finished unit (mean over replicas).
        replica_trace: with ``trace=True`` and replicas, per rank the ``{"unit", "step",
            "digest", "arch_digest"}`` of every step.
    """

    #: attributes not sent to replicas (rebuilt there, or the caller's alone)
    _transient: tuple[str, ...] = (
        "callbacks",
        "_replica",
        "status_writer",
        "train_loader",
        "valid_loader",
        "test_loader",
    )

    def setup_replicas(self, owner: str, kwargs: Mapping[str, Any]) -> None:
        """Read raynas' extra keywords (see :class:`TrainerOptions`); NNI's standalone logging
        where the application has set up none (:func:`raynas.nas.utils.init_standalone_logger`)."""
        self.options = TrainerOptions.from_kwargs(owner, kwargs)
        init_standalone_logger()
        self._replica: Any = None
        self.history: list[dict[str, Any]] = []
        self.replica_trace: list[list[dict[str, Any]]] = []

    # -- the loop -------------------------------------------------------------------------------

    def units(self) -> list[Any]:
        """The units of work left (picklable values; an epoch number for epoch-based trainers)."""
        raise NotImplementedError

    def begin_unit(self, unit: Any) -> None:
        """Before a unit, in the calling process (callbacks' ``on_epoch_begin``)."""

    def run_unit(self, unit: Any) -> AverageMeterGroup | None:
        """Train one unit (in the calling process, or on each replica); its meters."""
        raise NotImplementedError

    def end_unit(self, unit: Any, metrics: Mapping[str, float]) -> None:
        """After a unit, in the calling process, holding rank 0's state (validation, callbacks)."""

    def run_units(self) -> None:
        """Run every unit: here, or on ``options.replicas`` Ray replicas."""
        if self.options.replicas > 1 and self._replica is None:
            from raynas.train.trainer_replica import run_replicated

            run_replicated(self)
            return
        for unit in self.units():
            self.begin_unit(unit)
            meters = self.run_unit(unit)
            metrics = meters.averages() if meters is not None else {}
            self.history.append({"unit": unit, **metrics})
            self.end_unit(unit, metrics)

    # -- state ----------------------------------------------------------------------------------

    def stateful(self) -> dict[str, Any]:
        """``{name: object with state_dict/load_state_dict}``: what a checkpoint and a replica carry."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Plain values a checkpoint carries besides :meth:`stateful` (e.g. a baseline, a counter)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """The trainer's whole training state (weights, mutator, optimizers, counters)."""
        return {
            "objects": {name: obj.state_dict() for name, obj in self.stateful().items() if obj is not None},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        objects = self.stateful()
        for name, obj_state in state["objects"].items():
            objects[name].load_state_dict(obj_state)
        self.load_extra_state(state["extra"])

    # -- hooks of the step code -----------------------------------------------------------------

    def build_loaders(self) -> None:
        """(Re)build the trainer's data loaders (on a replica: its shards, for the unit)."""

    def backward_weights(self, loss: torch.Tensor) -> None:
        """``loss.backward()``; on replicas the weights' gradients are then averaged."""
        if self._replica is None:
            loss.backward()
        else:
            self._replica.backward(loss)

    def reduce_mean(self, tensors: Sequence[torch.Tensor]) -> None:
        """Average ``tensors`` in place across replicas (nothing to do alone)."""
        if self._replica is not None:
            self._replica.reduce_mean(list(tensors))

    def mean_value(self, value: Any) -> Any:
        """``value`` (a number or 0-dim tensor) averaged across replicas (itself alone)."""
        if self._replica is None:
            return value
        t = torch.tensor([float(value)], dtype=torch.float32)
        self._replica.reduce_mean([t])
        out = float(t[0])
        return torch.tensor(out, dtype=value.dtype, device=value.device) if torch.is_tensor(value) else out

    def step_done(self) -> None:
        """A training step (weights or architecture) ended."""
        if self._replica is not None:
            self._replica.step_done()

    def subset_loader(
        self, dataset: Any, indices: Sequence[int] | None, *, batch_size: int, workers: int, shuffle: bool
    ) -> Iterable:
        """NNI's loader: ``DataLoader`` over ``indices`` of ``dataset`` (a ``SubsetRandomSampler``
        when ``shuffle``; ``indices=None``: the whole dataset in order); on a replica, its shard."""
        if self._replica is not None:
            return self._replica.loader(dataset, indices, batch_size=batch_size, workers=workers, shuffle=shuffle)
        sampler = SubsetRandomSampler(indices) if shuffle else indices
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)

    def shard_loader(self, loader: Iterable) -> Iterable:
        """The user's loader as is; on a replica, its shard of it."""
        return loader if self._replica is None else self._replica.shard(loader)

    # -- pickling (what a replica gets) ---------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._transient:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._replica = None
        self.callbacks = []

    # -- checkpoints (written by the calling process) --------------------------------------------

    def progress(self) -> int:
        """Units finished so far (the checkpoint's ``epoch``)."""
        return 0

    def checkpoint(self, file: str | None = None) -> dict[str, Any]:
        """The trainer's checkpoint; written when ``file`` is given, else under
        ``<checkpoint_dir>/checkpoints`` when ``checkpoint_dir`` is set (atomically, the format of
        :func:`raynas.train.save_checkpoint`: ``model`` holds the weights, ``trainer_state`` all
        of :meth:`state_dict`, ``architecture`` the export of a learnable mutator).

        Returns:
            The checkpoint dict.
        """
        from raynas.train.checkpoint import FORMAT, save_checkpoint, to_cpu

        state = self.state_dict()
        model = self.stateful()["model"]
        model = getattr(model, "module", model)  # inside an nn.DataParallel
        mutator = getattr(self, "mutator", None)
        payload = {
            "model": model.state_dict(),
            "optimizer": None,
            "rank_states": [],
            "epoch": self.progress(),
            "step": self.progress(),
            "config": {"trainer": type(self).__name__, **dataclasses.asdict(self.options)},
            "architecture": mutator.export() if getattr(mutator, "learnable", False) else None,
            "trainer_state": state,
        }
        if file is not None:
            from raynas._io import write_torch_atomic

            write_torch_atomic(file, {**to_cpu(payload), "format": FORMAT})
        elif self.options.checkpoint_dir is not None:
            save_checkpoint(payload, self.options.checkpoint_dir)
        return payload

    def resume_from(self, path: str) -> None:
        """Continue from a checkpoint :meth:`checkpoint` wrote (a file, or a ``checkpoint_dir``).

        Raises:
            FileNotFoundError: no checkpoint there.
            CheckpointError: the file is not a trainer checkpoint.
        """
        from raynas.train.checkpoint import load_checkpoint
        from searchers.errors import CheckpointError

        data = load_checkpoint(path)
        if "trainer_state" not in data:
            raise CheckpointError(
                f"{str(path)!r} is a supernet checkpoint, not a trainer checkpoint (no trainer_state)"
            )
        self.load_state_dict(data["trainer_state"])
