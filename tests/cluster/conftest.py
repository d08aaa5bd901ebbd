"""A two-node cluster per test module, with this process connected to it as the driver."""

from __future__ import annotations

import pytest

from tests.cluster.twonode import TwoNodeCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (1 CPU, ``node_a``) and a worker (1 CPU, ``node_b``); this process is its driver.
    Torn down (both process groups killed) even when a test fails."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with TwoNodeCluster(tmp_path_factory.mktemp("cluster")) as c:
        ray.init(address=c.address, log_to_driver=False)
        try:
            yield c
        finally:
            ray.shutdown()
