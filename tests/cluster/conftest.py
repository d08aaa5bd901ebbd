"""A two-node cluster per test module, with this process connected to it as the driver; each test
starts on both nodes alive and every CPU free."""

from __future__ import annotations

import time

import pytest

from tests.cluster.twonode import TwoNodeCluster


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A head (1 CPU, ``node_a``) and a worker (1 CPU, ``node_b``); this process is its driver.
    Torn down (both nodes' sessions killed) even when a test fails."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with TwoNodeCluster(tmp_path_factory.mktemp("cluster")) as c:
        ray.init(address=c.address, log_to_driver=False)
        try:
            yield c
        finally:
            ray.shutdown()


@pytest.fixture
def cluster(two_nodes):
    """The module's cluster, as each test expects to find it: two alive nodes (the worker started
    again when a test before lost it) and all their CPUs free (what an earlier test's actors or
    placement groups held is released: Ray frees them shortly after their handles go)."""
    import ray

    if len(two_nodes.alive_nodes()) < 2:
        two_nodes.start_worker()
    total = ray.cluster_resources().get("CPU", 0.0)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0.0) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster's CPUs are still in use 60 s after the test before: "
                                 f"{ray.available_resources()} of {ray.cluster_resources()}")  # fmt: skip
        time.sleep(0.2)
    return two_nodes
