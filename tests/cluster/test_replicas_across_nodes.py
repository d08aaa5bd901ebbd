"""Supernet replicas across the two nodes: 4 replicas (0.5 CPU each) in one PACK placement group,
2 per node; each node's pair averages in shared memory and the two nodes' first replicas over
gloo. Every replica holds the same weights after every step, for random, SPOS and DARTS, with
shared and independent sampling."""

from __future__ import annotations

from collections import Counter

import pytest

from raynas.train import Callback, SupernetConfig, train_supernet
from raynas.train._shm import shm_supported
from tests.train.conftest import FACTORY, slice_mnist1d

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    """384 samples: 6 steps of 4 x 16 (3 for DARTS, whose weights train on one half)."""
    return slice_mnist1d(384, 64)


class Placements(Callback):
    """Where each replica of each attempt runs: ``{"node", "shm"}`` per rank."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def on_train_start(self, run):
        import ray

        self.seen.append(ray.get([h.placement.remote() for h in run.replicas]))


def across_nodes_config(**changes) -> SupernetConfig:
    """4 replicas x 0.5 CPU, one epoch of batch 16: what the 2 x 1 CPU cluster holds as 2 + 2."""
    base = dict(replicas=4, cpus_per_replica=0.5, epochs=1, batch_size=16, log_every=3, progress=False,
                tensorboard=False, dist_timeout_s=30.0)  # fmt: skip
    base.update(changes)
    return SupernetConfig(**base)


@pytest.mark.parametrize("sampling", ["shared", "independent"])
@pytest.mark.parametrize("algorithm", ["random", "spos", "darts"])
def test_four_replicas_on_two_nodes_stay_bit_identical(cluster, data, tmp_path, algorithm, sampling):
    placements = Placements()
    config = across_nodes_config(algorithm=algorithm, sampling=sampling)
    result = train_supernet(FACTORY, data, config, out_dir=tmp_path, trace=True, callbacks=[placements])

    (placed,) = placements.seen
    nodes = {n["node_id"] for n in cluster.alive_nodes()}
    per_node = Counter(p["node"] for p in placed)
    assert set(per_node) == nodes and sorted(per_node.values()) == [2, 2]  # 2 replicas on each node
    assert result.allreduce == ("shm" if shm_supported() else "gloo")

    traces = result.trace
    steps = 3 if algorithm == "darts" else 6
    assert [len(t) for t in traces] == [steps] * 4
    for i in range(steps):
        digests = {t[i]["digest"] for t in traces}
        assert len(digests) == 1, f"step {i + 1}: the replicas disagree: {digests}"
    assert len({t["digest"] for t in traces[0]}) == steps  # every step changed the weights
    paths = [[str(t[i]["path"]) for t in traces] for i in range(steps)]
    if sampling == "shared" or algorithm == "darts":  # DARTS trains every candidate, weighted
        assert all(len(set(p)) == 1 for p in paths)
    else:
        assert any(len(set(p)) > 1 for p in paths)  # each replica its own path
