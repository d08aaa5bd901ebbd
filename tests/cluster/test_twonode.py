"""The two-node test cluster itself: two raylets with their own resources, placement forced by a
node's custom resource, and a lost worker node (its process group killed on a progress trigger)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


class Counter:
    def __init__(self):
        self.n = 0

    def tick(self) -> int:
        self.n += 1
        return self.n

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def test_two_nodes_forced_placement_and_a_lost_worker(cluster):
    import ray
    from ray.exceptions import RayActorError

    nodes = cluster.alive_nodes()
    assert len(nodes) == 2
    by_resource = {("node_a" if "node_a" in n["resources"] else "node_b"): n for n in nodes}
    assert set(by_resource) == {"node_a", "node_b"}
    assert all(n["resources"]["CPU"] == 1.0 for n in nodes)
    assert ray.cluster_resources()["CPU"] == 2.0

    actor_cls = ray.remote(Counter)
    on_b = actor_cls.options(num_cpus=0.5, resources={"node_b": 0.01}).remote()
    on_a = actor_cls.options(num_cpus=0.5, resources={"node_a": 0.01}).remote()
    assert ray.get(on_b.node.remote()) == by_resource["node_b"]["node_id"]
    assert ray.get(on_a.node.remote()) == by_resource["node_a"]["node_id"]

    # the fault triggers on progress: the worker node is lost once its actor has counted to 3
    while ray.get(on_b.tick.remote()) < 3:
        pass
    cluster.kill_worker()
    with pytest.raises(RayActorError):
        ray.get(on_b.tick.remote(), timeout=60)
    assert [n["node_id"] for n in cluster.alive_nodes()] == [by_resource["node_a"]["node_id"]]
    assert ray.get(on_a.tick.remote()) == 1  # the head's actor never noticed

    cluster.start_worker()  # the next test of the module finds two nodes again
    assert len(cluster.alive_nodes()) == 2
    assert ray.get(actor_cls.options(num_cpus=0.5, resources={"node_b": 0.01}).remote().tick.remote()) == 1
