"""NNI's trainers (:mod:`raynas.nas.trainer`, ``replicas > 1``) on the supernet replicas' machinery.

:func:`run_replicated` is what a trainer's ``train()`` calls with ``replicas > 1``. It reuses
:class:`~raynas.train.replicas.RayReplicas` (actors, the ``torch.distributed`` group, turning a
dead actor into :class:`~raynas.train.replicas.ReplicaFailure`) with a different replica class,
:class:`TrainerReplica`, and the gradient syncs of :mod:`raynas.train.sync`:

- each actor unpickles the caller's trainer (model, mutator, optimizers, loss, metrics, data;
  not its callbacks) and runs the trainer's own unit code (an epoch) on its shard of the data;
  the weights' gradients are averaged after every backward (:meth:`TrainerReplica.backward`),
  the architecture gradients and ENAS' rewards where the trainer asks
  (:meth:`TrainerReplica.reduce_mean`). Every replica seeds its RNGs from ``(seed, unit)``, so
  sampled paths are the same on every replica and parameters stay bit-identical after every step;
- before each unit the caller's trainer sends its whole state; after it, the caller loads rank 0's
  state and runs validation, callbacks, ``export`` and checkpoints itself, as in one process;
- when a replica dies, the group is torn down, started again and the unit rerun from the state
  the caller holds (the state at the unit's start), at most ``max_failures`` times. A unit's data
  order and paths depend only on ``(seed, unit)``, so a rerun unit ends as the lost one would have.
"""

from __future__ import annotations

import logging
import os
import random
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, SubsetRandomSampler

from raynas.train.checkpoint import to_cpu
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.replicas import RayReplicas, ReplicaFailure
from raynas.train.reports import parameter_digest
from raynas.train.resolve import resolve_device
from raynas.train.sync import GradientSync, NoSync, choose_sync, join_process_group, leave_process_group, shm_capable

__all__ = ["TrainerReplica", "run_replicated", "replica_config", "unit_seed"]

_logger = logging.getLogger(__name__)


def unit_seed(seed: int, unit: Any) -> int:
    """The seed of one unit of work (an epoch, or ``(phase, epoch)``), the same on every replica."""
    parts = unit if isinstance(unit, tuple) else (unit,)
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence([int(seed), 0x7EA1, *words]).generate_state(1)[0])


def replica_config(trainer: Any) -> SupernetConfig:
    """The replicas' settings from the trainer's options (placement, sync, timeouts, seed)."""
    opts = trainer.options
    return SupernetConfig(
        replicas=opts.replicas,
        cpus_per_replica=opts.cpus_per_replica,
        threads=opts.threads,
        allreduce=opts.allreduce,
        max_failures=opts.max_failures,
        dist_timeout_s=opts.dist_timeout_s,
        seed=opts.seed,
        device="cuda" if torch.device(trainer.device).type == "cuda" else "cpu",
        sampling="shared",
        progress=False,
        tensorboard=False,
    )


class _Strided:
    """Batches ``rank, rank + world, ...`` of an iterable that every replica iterates alike
    (the same seeded RNG), cut to a multiple of ``world`` batches so every replica takes as many."""

    def __init__(self, loader: Iterable, rank: int, world: int):
        self.loader, self.rank, self.world = loader, rank, world
        try:
            self.n = len(loader) // world  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError(
                f"replicas > 1 shard a loader by its length; {type(loader).__name__} has none "
                "(pass a torch DataLoader or a loader with len())"
            ) from None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.loader):
            if i >= self.n * self.world:
                return
            if i % self.world == self.rank:
                yield batch


class TrainerReplica:
    """One replica of an NNI trainer (hosted by :class:`~raynas.train.replicas.ReplicaActor`).

    Its constructor takes :class:`~raynas.train.replicas.RayReplicas`' arguments: ``factory`` is
    the pickled trainer; ``data``, ``mutator_factory``, ``criterion`` and ``metrics`` are not used.
    """

    def __init__(
        self,
        *,
        factory: bytes,
        config: SupernetConfig,
        rank: int = 0,
        world_size: int = 1,
        trace: bool = False,
        data: Any = None,
        mutator_factory: Any = None,
        criterion: Any = None,
        metrics: Any = None,
    ):
        del data, mutator_factory, criterion, metrics  # ReplicaGroup's settings; the trainer brings its own
        self.blob = factory
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.trace = trace
        self.trainer: Any = None
        self.sync: GradientSync = NoSync(world_size)
        self.distributed = False
        self._shm_plan: dict[str, Any] | None = None
        self.unit: Any = None
        self.seed = 0
        self.steps = 0
        self.records: list[dict[str, Any]] = []
        self.status: list[str] = []

    # -- what RayReplicas asks of a replica ------------------------------------------------------

    def shm_capable(self) -> bool:
        """See :func:`raynas.train.sync.shm_capable`."""
        return shm_capable(self.config)

    def connect(self, *, init_method: str, shm: Mapping[str, Any] | None = None) -> None:
        """Join the replicas' process group."""
        self._shm_plan = join_process_group(
            self.config, rank=self.rank, world_size=self.world_size, init_method=init_method, shm=shm
        )
        self.distributed = True

    def setup(self, checkpoint: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Unpickle the trainer onto this replica's device and choose the gradient sync."""
        import pickle

        torch.set_num_threads(self.config.threads)
        self.device = resolve_device(self.config)
        trainer = pickle.loads(self.blob)
        trainer._replica = self
        trainer.device = self.device
        self.model = trainer.stateful()["model"].to(self.device)
        mutator = getattr(trainer, "mutator", None)
        self.mutator = mutator.to(self.device) if isinstance(mutator, nn.Module) else nn.Module()
        self.trainer = trainer
        self.sync = choose_sync(
            self.config,
            world_size=self.world_size,
            distributed=self.distributed,
            device=self.device,
            model=self.model,
            mutator=self.mutator,
            shm=self._shm_plan,
        )
        return {"pid": os.getpid(), "allreduce": self.sync.name}

    def digest(self) -> str:
        """The model's parameter digest."""
        return parameter_digest(self.model)

    def close(self) -> None:
        """Leave the process group and release the sync."""
        if self.distributed:
            leave_process_group()
            self.distributed = False
        self.sync.close()

    # -- one unit --------------------------------------------------------------------------------

    def run_unit(self, unit: Any, state: Mapping[str, Any]) -> dict[str, Any]:
        """Load the caller's state, seed from ``(seed, unit)``, rebuild the shards, run the unit.

        Returns:
            ``{"metrics": meters' averages, "trace": step digests, "state": rank 0's state,
            "status": rank 0's enable_visualization() status lines}``.
        """
        trainer = self.trainer
        trainer.load_state_dict(state)
        self.unit, self.steps, self.records, self.status = unit, 0, [], []
        self.seed = unit_seed(self.config.seed, unit)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)
        trainer.build_loaders()
        meters = trainer.run_unit(unit)
        return {
            "metrics": meters.averages() if meters is not None else {},
            "trace": self.records,
            "state": to_cpu(trainer.state_dict()) if self.rank == 0 else None,
            "status": self.status,
        }

    # -- the hooks of the trainer's step code ----------------------------------------------------

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` with the weights' gradients averaged across replicas."""
        self.sync.before_last_backward()
        loss.backward()
        self.sync.sync_gradients()

    def reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors in place across replicas."""
        self.sync.reduce_mean(tensors)

    def status_line(self, line: str) -> None:
        """Keep a line of ``enable_visualization()``'s status log (rank 0's; the caller writes them)."""
        if self.rank == 0:
            self.status.append(line)

    def step_done(self) -> None:
        """Count the step; with ``trace``, record the model's and the mutator's digests and the
        trainer's extra state (all must agree across replicas)."""
        self.steps += 1
        if self.trace:
            arch = parameter_digest(self.mutator) if any(True for _ in self.mutator.parameters()) else ""
            self.records.append(
                {
                    "unit": self.unit,
                    "step": self.steps,
                    "digest": parameter_digest(self.model),
                    "arch_digest": arch,
                    "extra": repr(self.trainer.extra_state()),  # e.g. ENAS' baseline
                }
            )

    def _mine(self, indices: Sequence[int], shuffle: bool) -> list[int]:
        idx = np.asarray(indices, dtype=np.int64)
        if shuffle:
            idx = np.random.default_rng([self.seed, 0xDA7A]).permutation(idx)
        per = len(idx) // self.world_size
        if per < 1:
            raise ConfigError(f"replicas={self.world_size} need at least one item each, got {len(idx)} items")
        return idx[self.rank * per : (self.rank + 1) * per].tolist()

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed)
        return g

    def loader(
        self, dataset: Any, indices: Sequence[int] | None, *, batch_size: int, workers: int, shuffle: bool
    ) -> DataLoader:
        """This replica's shard of ``indices`` (all of ``dataset`` when ``None``), shuffled by the unit's seed."""
        mine = self._mine(range(len(dataset)) if indices is None else indices, shuffle)
        return DataLoader(
            dataset, batch_size=batch_size, sampler=mine, num_workers=workers, generator=self._generator()
        )

    def shard(self, loader: Iterable) -> Iterable:
        """This replica's shard of a user's loader: a DataLoader over a standard sampler is rebuilt
        over its shard of the indices; any other loader yields every ``world_size``-th batch."""
        sampler = getattr(loader, "sampler", None)
        if isinstance(loader, DataLoader) and loader.batch_size is not None:
            if isinstance(sampler, SubsetRandomSampler):
                mine = self._mine(list(sampler.indices), True)
            elif isinstance(sampler, (RandomSampler, SequentialSampler)):
                mine = self._mine(range(len(loader.dataset)), isinstance(sampler, RandomSampler))
            else:
                return _Strided(loader, self.rank, self.world_size)
            return DataLoader(
                loader.dataset,
                batch_size=loader.batch_size,
                sampler=mine,
                num_workers=loader.num_workers,
                collate_fn=loader.collate_fn,
                drop_last=loader.drop_last,
                pin_memory=loader.pin_memory,
                generator=self._generator(),
            )
        return _Strided(loader, self.rank, self.world_size)


def _start(ref: Any, config: SupernetConfig, trace: bool) -> RayReplicas:
    group = RayReplicas(factory=ref, data=None, config=config, trace=trace, replica_cls=TrainerReplica)
    try:
        group.start(None)
    except BaseException:
        group.shutdown()
        raise
    return group


def _pickled(trainer: Any) -> bytes:
    import cloudpickle

    try:
        return cloudpickle.dumps(trainer)
    except Exception as exc:  # noqa: BLE001 - any pickling failure has the same remedy
        raise ConfigError(
            f"replicas={trainer.options.replicas} sends the trainer (model, mutator, optimizer, loss, metrics, "
            f"data) to Ray actors, but it does not pickle: {type(exc).__name__}: {exc}"
        ) from None


def run_replicated(trainer: Any) -> None:
    """Run the trainer's units on ``trainer.options.replicas`` Ray actors (see the module docstring).

    Raises:
        ConfigError: the trainer does not pickle.
        ReplicaFailure: replicas kept failing after ``max_failures`` restarts.
    """
    import ray

    opts = trainer.options
    if not ray.is_initialized():
        ray.init(address=opts.address) if opts.address else ray.init()
    config = replica_config(trainer)
    ref = ray.put(_pickled(trainer))
    trainer.replica_trace = [[] for _ in range(opts.replicas)]
    trainer.restarts = 0
    group: RayReplicas | None = None
    try:
        for unit in trainer.units():
            trainer.begin_unit(unit)
            while True:
                try:
                    group = group or _start(ref, config, opts.trace)
                    results = group.call("run_unit", unit, ray.put(trainer.state_dict()))
                    break
                except ReplicaFailure as exc:
                    if group is not None:
                        group.shutdown()
                        group = None
                    trainer.restarts += 1
                    if trainer.restarts > opts.max_failures:
                        raise ReplicaFailure(
                            f"trainer replicas failed {trainer.restarts} times (max_failures={opts.max_failures}); "
                            f"last: {exc}"
                        ) from exc
                    _logger.warning("%s; restarting the replicas and rerunning %r", exc, unit)
            trainer.load_state_dict(results[0]["state"])
            writer = getattr(trainer, "status_writer", None)
            if writer is not None and results[0].get("status"):
                writer.write("".join(line + "\n" for line in results[0]["status"]))
                writer.flush()
            for obj in trainer.stateful().values():
                if isinstance(obj, torch.optim.Optimizer):
                    obj._opt_called = True  # it stepped on the replicas: no "scheduler before optimizer" warning
            names = results[0]["metrics"].keys()
            metrics = {k: float(np.mean([r["metrics"].get(k, np.nan) for r in results])) for k in names}
            trainer.history.append({"unit": unit, **metrics})
            for rank, result in enumerate(results):
                trainer.replica_trace[rank].extend(result["trace"])
            trainer.end_unit(unit, metrics)
    finally:
        if group is not None:
            group.shutdown()
