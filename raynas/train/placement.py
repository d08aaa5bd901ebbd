"""Whether the Ray cluster can place what raynas asks of it, said within seconds.

Ray waits in silence for a request no node can hold (a placement group, an actor or a Tune
trial); a user saw ``[2/4] supernet ...`` and then nothing for 15 minutes. Every request raynas
makes goes through :func:`require` (Tune trials) or :func:`reserve_group` (supernet replicas)
first. A request is ``count`` bundles of resources (``supernet.replicas`` x ``{"CPU":
cpus_per_replica}``; one trial's ``{"CPU": cpus_per_trial, "GPU": gpus_per_trial}``); it is
placeable when the alive nodes' total resources hold every bundle (first-fit decreasing, as the
bundles of one placement group are packed).

When it is not: without an autoscaler, a :class:`PlacementError` at once, naming the request, the
keys that set it and what the cluster has (the CLI prints it as one line, exit code 2). With an
autoscaler (or ``RAYNAS_PLACEMENT_TIMEOUT_S`` set), the demand is handed to it
(``ray.autoscaler.sdk.request_resources``) and raynas waits up to that timeout, with a progress
line every :data:`PROGRESS_S` seconds, then fails the same way.

Why supernet replicas are one placement group with the ``PACK`` strategy (and not per-node custom
resources or ``SPREAD``): the group is reserved whole or not at all, so a half-placed set of
replicas never holds CPUs while waiting for the rest; ``PACK`` puts the replicas on as few nodes as
possible, so most gradients meet in one node's shared memory and only one replica per node (its
leader) all-reduces over the network; when one node cannot hold them all, the rest spill to the
next nodes. ``SPREAD`` would put every replica on its own node (all traffic over gloo), and node
resources would tie a config to node names.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from searchers.errors import ConfigError, RaynasError

__all__ = [
    "PlacementError",
    "Request",
    "ENV_TIMEOUT",
    "cluster_nodes",
    "fits",
    "most_that_fit",
    "describe_nodes",
    "wait_timeout_s",
    "require",
    "reserve_group",
    "trial_request",
    "check_experiment",
]

#: environment variable: seconds to wait for a request the cluster cannot hold now
ENV_TIMEOUT = "RAYNAS_PLACEMENT_TIMEOUT_S"
#: the wait when an autoscaler is found and ``RAYNAS_PLACEMENT_TIMEOUT_S`` is not set
AUTOSCALER_WAIT_S = 600.0
#: seconds between two progress lines while waiting
PROGRESS_S = 10.0
_POLL_S = 1.0
_EPS = 1e-9

Log = Callable[[str], None]
_log = logging.getLogger(__name__)


class PlacementError(RaynasError, RuntimeError):
    """The cluster cannot place a request (supernet replicas, a search or retrain trial)."""


@dataclass(frozen=True)
class Request:
    """``count`` bundles of ``bundle`` resources, asked for by ``what`` (set by ``keys``).

    Attributes:
        what: ``"supernet replicas"``, ``"search trial"``, ...
        count: how many bundles.
        bundle: one bundle's resources (``{"CPU": 1.0, "GPU": 0.0}``; zeros are dropped).
        keys: the settings that make the request (named in the error).
    """

    what: str
    count: int
    bundle: Mapping[str, float]
    keys: str = ""
    _clean: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_clean", {k: float(v) for k, v in self.bundle.items() if float(v) > 0})

    @property
    def resources(self) -> dict[str, float]:
        """One bundle without its zero entries (``{}``: nothing to place)."""
        return dict(self._clean)

    def with_count(self, count: int) -> Request:
        """The same request for ``count`` bundles."""
        return Request(what=self.what, count=count, bundle=self.bundle, keys=self.keys)

    def describe(self) -> str:
        """``"2 supernet replicas x 1 CPU"``."""
        return f"{self.count} {self.what} x {_amounts(self._clean) or 'no resources'}"


def _amounts(resources: Mapping[str, float], names: Sequence[str] | None = None) -> str:
    names = list(names) if names is not None else list(resources)
    return " + ".join(f"{_num(resources.get(k, 0.0))} {k}" for k in names)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def cluster_nodes() -> list[dict[str, float]]:
    """The total resources of every alive node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def fits(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping[str, float]]) -> bool:
    """Whether ``nodes`` (their total resources) can hold every bundle (first-fit decreasing)."""
    free = [dict(n) for n in nodes]
    for bundle in sorted(bundles, key=lambda b: -sum(b.values())):
        for node in free:
            if all(node.get(k, 0.0) + _EPS >= v for k, v in bundle.items()):
                for k, v in bundle.items():
                    node[k] = node.get(k, 0.0) - v
                break
        else:
            return False
    return True


def most_that_fit(request: Request, nodes: Sequence[Mapping[str, float]]) -> int:
    """The largest ``k <= request.count`` such that ``k`` bundles fit ``nodes`` (0 if none)."""
    bundle = request.resources
    k = request.count
    while k > 0 and not fits([bundle] * k, nodes):
        k -= 1
    return k


def describe_nodes(nodes: Sequence[Mapping[str, float]], names: Sequence[str] = ("CPU",)) -> str:
    """``"1 node (1 CPU)"``, ``"2 nodes (1 CPU + 0 GPU; 1 CPU + 1 GPU)"``: the ``names`` resources."""
    if not nodes:
        return "no alive node"
    each = "; ".join(_amounts(n, names) for n in nodes)
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({each})"


def autoscaler_present() -> bool:
    """Whether an autoscaler with its own node types runs (a cluster started by ``ray up`` or
    KubeRay): its status report names node types; a cluster of ``ray start`` nodes only has the
    read-only ``node_<id>`` types."""
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(b"__autoscaling_status")
        report = json.loads(raw or b"{}").get("autoscaler_report") or {}
    except Exception:  # noqa: BLE001 - no report (yet): no autoscaler that raynas can count on
        return False
    mapping = report.get("node_type_mapping") or {}
    return any(not str(kind).startswith("node_") for kind in mapping.values())


def wait_timeout_s() -> float:
    """How long to wait for a request the cluster cannot hold now: ``RAYNAS_PLACEMENT_TIMEOUT_S``
    if set, else :data:`AUTOSCALER_WAIT_S` with an autoscaler and 0 without.

    Raises:
        ConfigError: the variable is not a number >= 0.
    """
    raw = os.environ.get(ENV_TIMEOUT)
    if raw is None or raw.strip() == "":
        return AUTOSCALER_WAIT_S if autoscaler_present() else 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{ENV_TIMEOUT} must be a number of seconds >= 0, got {raw!r}")
    return value


def _unplaceable(request: Request, nodes: Sequence[Mapping[str, float]]) -> str:
    names = ["CPU", *[k for k in request.resources if k != "CPU"]]
    hint = f" (set by {request.keys})" if request.keys else ""
    return f"cannot place {request.describe()}{hint}: the cluster has {describe_nodes(nodes, names)}"


def require(request: Request, *, log: Log = _log.warning, timeout_s: float | None = None) -> None:
    """Return once the cluster's alive nodes could hold ``request``.

    Args:
        request: what is asked for.
        log: where the waiting and progress lines go.
        timeout_s: how long to wait (default :func:`wait_timeout_s`).

    Raises:
        PlacementError: it does not fit now and did not within the timeout (at once without one).
    """
    bundles = [request.resources] * request.count
    if not request.resources or fits(bundles, cluster_nodes()):
        return
    timeout = wait_timeout_s() if timeout_s is None else timeout_s
    if timeout <= 0:
        raise PlacementError(f"{_unplaceable(request, cluster_nodes())}; ask for less or add nodes")
    from ray.autoscaler.sdk import request_resources

    log(f"{_unplaceable(request, cluster_nodes())}; waiting up to {timeout:g} s for more nodes ({ENV_TIMEOUT})")
    request_resources(bundles=bundles)  # the demand the autoscaler scales up for
    start = last = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            time.sleep(_POLL_S)
            if fits(bundles, cluster_nodes()):
                log(f"{request.describe()}: the cluster can place them now")
                return
            if time.monotonic() - last >= PROGRESS_S:
                last = time.monotonic()
                log(f"still waiting for {request.describe()} ({timeout - (last - start):.0f} s left)")
    finally:
        request_resources(bundles=[])
    waited = f"{_unplaceable(request, cluster_nodes())} after waiting {timeout:g} s"
    raise PlacementError(f"{waited}; ask for less or add nodes")


def reserve_group(request: Request, *, log: Log, allow_fewer: bool = False) -> tuple[Any, int]:
    """Reserve a ``PACK`` placement group of ``request.count`` bundles (see the module docstring).

    Args:
        request: the replicas' request.
        log: where the waiting, progress and fewer-replicas lines go.
        allow_fewer: when the cluster can no longer hold them all (a node was lost), reserve as
            many as fit instead of waiting or failing.

    Returns:
        ``(placement group or None when a bundle needs no resources, count reserved)``.

    Raises:
        PlacementError: not placeable (see :func:`require`), or not even one bundle fits.
    """
    from ray.util.placement_group import placement_group, remove_placement_group

    if not request.resources:
        return None, request.count
    count, last = request.count, time.monotonic()
    while True:
        nodes = cluster_nodes()
        if allow_fewer and not fits([request.resources] * count, nodes):
            count = most_that_fit(request.with_count(count), nodes)
            if count == 0:
                raise PlacementError(f"{_unplaceable(request.with_count(1), nodes)}; ask for less or add nodes")
        require(request.with_count(count), log=log)
        group = placement_group([request.resources] * count, strategy="PACK")
        try:
            while not group.wait(timeout_seconds=_POLL_S):
                if not fits([request.resources] * count, cluster_nodes()):
                    break  # a node went away meanwhile: decide again
                if time.monotonic() - last >= PROGRESS_S:
                    last = time.monotonic()
                    log(f"waiting for {request.with_count(count).describe()}: the cluster's resources are in use")
            else:
                return group, count
        except BaseException:
            # interrupted while pending (Ctrl-C, a timeout): a pending group left behind would take
            # the resources the moment they come free, and hold them for as long as the driver lives
            remove_placement_group(group)
            raise
        remove_placement_group(group)


def trial_request(phase: str, resources: Mapping[str, float]) -> Request:
    """One ``search`` / ``retrain`` trial's request (``resources``: Tune's ``{"cpu", "gpu"}``)."""
    return Request(
        what=f"{phase} trial",
        count=1,
        bundle={"CPU": float(resources.get("cpu", 0.0)), "GPU": float(resources.get("gpu", 0.0))},
        keys=f"{phase}.cpus_per_trial, {phase}.gpus_per_trial",
    )


def check_experiment(experiment: Any, phases: Sequence[str]) -> None:
    """Before any phase runs: fail at once on a request of ``phases`` (those not done yet) that the
    cluster cannot place, when no wait applies (:func:`wait_timeout_s` is 0); with a wait, each
    phase waits for its own request when it comes.

    Args:
        experiment: a :class:`raynas.experiment.Experiment` (its ``config`` and ``dir``).
        phases: the phases this run will get to.

    Raises:
        PlacementError: a request the cluster cannot place.
    """
    if wait_timeout_s() > 0:
        return
    config = experiment.config
    todo = [p for p in phases if not experiment.dir.done(p)]
    requests = []
    if "supernet" in todo:
        sn = config.supernet
        gpus = 1.0 if sn.device == "cuda" else 0.0
        keys = "supernet.replicas, supernet.cpus_per_replica" + (", supernet.device" if gpus else "")
        bundle = {"CPU": sn.cpus_per_replica, "GPU": gpus}
        requests.append(Request(what="supernet replicas", count=sn.replicas, bundle=bundle, keys=keys))
    if "search" in todo and config.search.num_samples > 0:
        s = config.search
        requests.append(trial_request("search", {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}))
    if "retrain" in todo and config.retrain.top_k > 0:
        r = config.retrain
        requests.append(trial_request("retrain", {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial}))
    for request in requests:
        require(request, timeout_s=0)
