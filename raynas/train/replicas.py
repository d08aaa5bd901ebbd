"""Groups of replicas with one interface: in the calling process (local) or as Ray actors.

Why plain Ray actors with ``torch.distributed`` and not Ray Train's ``TorchTrainer``: on a small
machine ``TorchTrainer`` took ~20 s to start two gloo workers (measured on Ray 2.60, 2 cores), while two actors
join a gloo group in ~0.1 s; supernet runs, tests and the benchmarks restart replicas often (every
recovery is a restart). The cost is that raynas owns recovery: :class:`RayReplicas` turns a dead
actor (``ray.kill``, a killed process, a lost node) into :class:`ReplicaFailure`, and the trainer
tears the whole group down and restarts it from the last checkpoint.

Each actor runs ``log_every`` steps per call and reports back, so the driver costs one round trip
per report, not per step; gradients flow between the actors only (one all-reduce per step).

The replicas are one ``PACK`` placement group (:func:`raynas.train.placement.reserve_group` says
why): as few nodes as possible, the replicas of one node averaging in shared memory and the
nodes' first replicas over gloo. A request the cluster cannot hold fails within seconds with what
it has; after a lost node the trainer may ask for fewer replicas (``allow_fewer``).
"""

from __future__ import annotations

import abc
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

import torch

from raynas.train._shm import SharedMemoryTimeout, shm_name
from raynas.train.config import SupernetConfig
from raynas.train.replica import MutatorFactory, SupernetReplica
from raynas.train.reports import ReplicaInfo, ReplicaState, StepReport

__all__ = ["ReplicaFailure", "ReplicaGroup", "LocalReplicas", "RayReplicas", "ReplicaActor", "shm_plan"]

_log = logging.getLogger(__name__)


class ReplicaFailure(RuntimeError):
    """A replica died (actor killed, process killed, node lost) or lost its peers."""


class ReplicaGroup(abc.ABC):
    """The replicas of one training run, which :func:`raynas.train.train_supernet` drives the same
    way in the calling process (:class:`LocalReplicas`) or as Ray actors (:class:`RayReplicas`).

    Args:
        factory: model factory (callable or ``"module:function"``).
        data: the data splits (see :func:`raynas.train.data.resolve_data`).
        config: the settings.
        mutator_factory: see :class:`~raynas.train.replica.SupernetReplica`.
        trace: record per-step digests and paths.
        criterion: the loss (default: ``config.loss``, else cross-entropy).
        metrics: the metrics function (default: ``config.metrics``).
    """

    #: the replicas run in the calling process
    local: bool = False

    def __init__(
        self,
        *,
        factory: Any,
        data: Any,
        config: SupernetConfig,
        mutator_factory: MutatorFactory | None = None,
        trace: bool = False,
        criterion: Callable | None = None,
        metrics: Callable | None = None,
    ):
        self.factory = factory
        self.data = data
        self.config = config
        self.mutator_factory = mutator_factory
        self.trace = trace
        self.criterion = criterion
        self.metrics = metrics
        self.world_size = 1 if self.local else config.replicas

    def replica_kwargs(self, rank: int) -> dict[str, Any]:
        """The arguments of rank ``rank``'s :class:`~raynas.train.replica.SupernetReplica`."""
        return {
            "factory": self.factory,
            "data": self.data,
            "config": self.config,
            "rank": rank,
            "world_size": self.world_size,
            "mutator_factory": self.mutator_factory,
            "trace": self.trace,
            "criterion": self.criterion,
            "metrics": self.metrics,
        }

    @property
    @abc.abstractmethod
    def handles(self) -> list[Any]:
        """The Ray actor handles, in rank order (none in local mode)."""

    @abc.abstractmethod
    def start(self, checkpoint: Mapping[str, Any] | None) -> list[ReplicaInfo]:
        """Start the replicas and set them up from ``checkpoint``; one info per replica."""

    @abc.abstractmethod
    def run(self, n_steps: int) -> list[StepReport]:
        """Every replica runs ``n_steps`` steps; their reports in rank order."""

    @abc.abstractmethod
    def end_epoch(self) -> None:
        """Every replica finishes the epoch."""

    @abc.abstractmethod
    def state(self) -> list[ReplicaState]:
        """Rank 0's full state, the others' rank states (rank order)."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release what :meth:`start` took (idempotent)."""


class LocalReplicas(ReplicaGroup):
    """One replica in the calling process (local mode: no Ray, ``pdb`` works); ``config.replicas`` is ignored."""

    local = True

    def __init__(self, **settings: Any):  # the settings of ReplicaGroup
        super().__init__(**settings)
        self.replica = SupernetReplica(**self.replica_kwargs(0))
        self._threads: int | None = None

    @property
    def handles(self) -> list[Any]:
        """No actors in local mode."""
        return []

    def start(self, checkpoint: Mapping[str, Any] | None) -> list[ReplicaInfo]:
        """Set the replica up (torch threads are restored by :meth:`shutdown`)."""
        self._threads = torch.get_num_threads()
        return [self.replica.setup(checkpoint)]

    def run(self, n_steps: int) -> list[StepReport]:
        """Run ``n_steps`` steps; one report."""
        return [self.replica.run(n_steps)]

    def end_epoch(self) -> None:
        """Finish the epoch."""
        self.replica.end_epoch()

    def state(self) -> list[ReplicaState]:
        """``[full state]`` (see :meth:`SupernetReplica.state`)."""
        return [self.replica.state(full=True)]

    def shutdown(self) -> None:
        """Restore the caller's torch thread count."""
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None


class ReplicaActor:
    """The body of a replica actor (wrapped with ``ray.remote`` by :class:`RayReplicas`).

    Args:
        replica_cls: the replica class the actor hosts (default :class:`SupernetReplica`; NNI's
            trainers use :class:`raynas.train.trainer_replica.TrainerReplica`).
        **kwargs: its constructor arguments.
    """

    def __init__(self, replica_cls: Callable[..., Any] | None = None, **kwargs: Any):
        self.replica = (replica_cls or SupernetReplica)(**kwargs)

    def call(self, method: str, *args: Any) -> Any:
        """``replica.<method>(*args)``: a replica class's own entry points (see :meth:`RayReplicas.call`)."""
        return getattr(self.replica, method)(*args)

    def address(self) -> str:
        """A ``tcp://ip:port`` rendezvous address on this actor's node (rank 0 hosts the store)."""
        import ray

        ip = ray.util.get_node_ip_address()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"tcp://{ip}:{port}"

    def placement(self) -> dict[str, Any]:
        """``{"node": Ray node id, "shm": whether this replica can reduce in shared memory}``."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "shm": self.replica.shm_capable()}

    def connect(self, init_method: str, shm: Mapping[str, Any] | None = None) -> None:
        """Join the process group at ``init_method`` (see :meth:`SupernetReplica.connect`)."""
        self.replica.connect(init_method=init_method, shm=shm)

    def setup(self, checkpoint: Mapping[str, Any] | None) -> ReplicaInfo:
        """Build the replica (see :meth:`SupernetReplica.setup`)."""
        return self.replica.setup(checkpoint)

    def run(self, n_steps: int) -> StepReport:
        """Train ``n_steps`` steps; the report."""
        return self.replica.run(n_steps)

    def end_epoch(self) -> None:
        """Finish the epoch."""
        self.replica.end_epoch()

    def state(self, full: bool) -> ReplicaState:
        """The replica's state (full on rank 0) and the path in force."""
        return self.replica.state(full=full)

    def digest(self) -> str:
        """The replica's parameter digest."""
        return self.replica.digest()


class RayReplicas(ReplicaGroup):
    """``config.replicas`` replica actors in one ``torch.distributed`` group (gloo on CPU, nccl on
    GPU). Each actor builds its datasets itself from a :class:`~raynas.train.data.DataSpec`; only a
    mapping of datasets (Python API) is put in the object store.

    Args:
        replica_cls: the class each actor hosts (default :class:`SupernetReplica`; NNI's trainers use
            :class:`raynas.train.trainer_replica.TrainerReplica`).
        allow_fewer: start as many replicas as the cluster can hold when that is fewer than
            ``config.replicas`` (after a lost node); :attr:`world_size` says how many started.
        **settings: the settings of :class:`ReplicaGroup`.
    """

    def __init__(
        self, *, replica_cls: Callable[..., Any] | None = None, allow_fewer: bool = False, **settings: Any
    ):
        super().__init__(**settings)
        self.replica_cls = replica_cls
        self.allow_fewer = allow_fewer
        self.actors: list[Any] = []
        self.group: Any = None

    @property
    def handles(self) -> list[Any]:
        """The actor handles (rank order)."""
        return list(self.actors)

    def _gpus(self) -> float:
        import ray

        cfg = self.config
        if cfg.device == "cpu":
            return 0
        if cfg.device == "cuda":
            return 1
        return 1 if ray.cluster_resources().get("GPU", 0) >= self.world_size else 0

    def start(self, checkpoint: Mapping[str, Any] | None) -> list[ReplicaInfo]:
        """Start the actors, join them in a process group and set them up from ``checkpoint``."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from raynas.train.placement import Request, reserve_group

        if not ray.is_initialized():
            ray.init()
        gpus = self._gpus()
        request = Request(
            what="supernet replicas",
            count=self.world_size,
            bundle={"CPU": self.config.cpus_per_replica, "GPU": gpus},
            keys="supernet.replicas, supernet.cpus_per_replica" + (", supernet.device" if gpus else ""),
        )
        self.group, self.world_size = reserve_group(request, log=_log.warning, allow_fewer=self.allow_fewer)
        actor = ray.remote(ReplicaActor)
        options = dict(num_cpus=self.config.cpus_per_replica, num_gpus=gpus, max_restarts=0, max_task_retries=0)

        def placed(rank: int) -> dict[str, Any]:
            if self.group is None:
                return options
            strategy = PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=rank)
            return {**options, "scheduling_strategy": strategy}

        source = getattr(self.data, "source", self.data)
        data = ray.put(self.data) if isinstance(source, Mapping) else self.data  # datasets built in Python
        self.actors = [
            actor.options(**placed(rank)).remote(
                replica_cls=self.replica_cls, **{**self.replica_kwargs(rank), "data": data}
            )
            for rank in range(self.world_size)
        ]
        if self.world_size > 1:
            address = self._get([self.actors[0].address.remote()])[0]
            placements = self._get([a.placement.remote() for a in self.actors])
            plans = shm_plan(placements)
            self._get([a.connect.remote(address, plan) for a, plan in zip(self.actors, plans)])
        ref = ray.put(dict(checkpoint)) if checkpoint is not None else None
        return self._get([a.setup.remote(ref) for a in self.actors])

    def run(self, n_steps: int) -> list[StepReport]:
        """Every replica runs ``n_steps`` steps; their reports in rank order."""
        return self._get([a.run.remote(n_steps) for a in self.actors])

    def end_epoch(self) -> None:
        """Every replica finishes the epoch."""
        self._get([a.end_epoch.remote() for a in self.actors])

    def state(self) -> list[ReplicaState]:
        """Rank 0's full state, the others' rank states (rank order)."""
        return self._get([a.state.remote(rank == 0) for rank, a in enumerate(self.actors)])

    def call(self, method: str, *args: Any) -> list[Any]:
        """Every replica runs ``replica.<method>(*args)``; the results in rank order (a death
        raises :class:`ReplicaFailure`, as :meth:`run` does)."""
        return self._get([a.call.remote(method, *args) for a in self.actors])

    def digests(self) -> list[str]:
        """Every replica's parameter digest (rank order)."""
        return self._get([a.digest.remote() for a in self.actors])

    def shutdown(self) -> None:
        """Kill every actor of the group and release its placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is fine
                pass
        self.actors = []
        if self.group is not None:
            try:
                remove_placement_group(self.group)
            except Exception:  # noqa: BLE001 - a group of a lost cluster is gone already
                pass
            self.group = None

    def _get(self, refs: list[Any]) -> list[Any]:
        """``ray.get`` that turns a replica's death (or its peers' broken collective) into
        :class:`ReplicaFailure`, and re-raises any other error as its own type."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        failures: tuple[type[BaseException], ...] = (RayActorError,)
        for name in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "ActorUnavailableError"):
            if hasattr(ray.exceptions, name):
                failures += (getattr(ray.exceptions, name),)
        pending = list(refs)
        results: dict[Any, Any] = {}
        task_error: RayTaskError | None = None
        grace = min(10.0, self.config.dist_timeout_s)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=grace if task_error is not None else None)
            if not ready:
                break  # the others stay blocked after a task error: give up on them
            for ref in ready:
                try:
                    results[ref] = ray.get(ref)
                except failures as exc:
                    raise ReplicaFailure(f"a supernet replica died: {type(exc).__name__}: {_first_line(exc)}") from exc
                except GetTimeoutError:  # pragma: no cover - no timeout is passed
                    raise
                except RayTaskError as exc:
                    if _is_collective_error(exc):
                        # a broken collective means a peer went away: keep looking for the death
                        task_error = task_error or exc
                        continue
                    if task_error is None:
                        task_error = exc
        if task_error is not None:
            if _is_collective_error(task_error):
                raise ReplicaFailure(f"a supernet replica lost its peers: {_first_line(task_error)}") from task_error
            raise task_error.as_instanceof_cause()
        return [results[ref] for ref in refs]


def shm_plan(placements: list[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """Per rank, its shared-memory reduction settings (see :meth:`SupernetReplica.connect`), or
    ``None`` for every rank when shared memory does not apply: some replica cannot use it, or no
    node hosts two replicas (then it would only add a step to the backend's all-reduce).

    Args:
        placements: per rank, ``{"node": node id, "shm": capable}``.
    """
    if not placements or not all(p["shm"] for p in placements):
        return [None] * len(placements)
    nodes: dict[str, list[int]] = {}
    for rank, p in enumerate(placements):
        nodes.setdefault(str(p["node"]), []).append(rank)
    if max(len(ranks) for ranks in nodes.values()) < 2:
        return [None] * len(placements)
    leaders = [ranks[0] for ranks in nodes.values()] if len(nodes) > 1 else None
    names = {node: shm_name() for node in nodes}
    plans: list[dict[str, Any] | None] = [None] * len(placements)
    for node, ranks in nodes.items():
        for local_rank, rank in enumerate(ranks):
            plans[rank] = {"name": names[node], "local_rank": local_rank, "local_size": len(ranks), "leaders": leaders}
    return plans


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_collective_error(exc: BaseException) -> bool:
    cause = getattr(exc, "cause", None)
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(cause, dist_error):
        return True
    if isinstance(cause, SharedMemoryTimeout):
        return True
    text = f"{cause!r} {exc}".lower()
    return "gloo" in text or "nccl" in text or "connection closed by peer" in text or "connection reset" in text
