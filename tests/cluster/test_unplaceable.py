"""A request the cluster cannot place is said within seconds, with the real CLI on a one-node
cluster with one CPU: supernet replicas, a search trial, a retrain trial; and with a wait
(``RAYNAS_PLACEMENT_TIMEOUT_S``, as with an autoscaler) a waiting line, then one line, exit 2."""

from __future__ import annotations

import pytest

from tests.cluster.twonode import TwoNodeCluster
from tests.experiment.cli_helpers import run_cli, sets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_cpu(tmp_path_factory):
    """A one-node cluster: the head alone, 1 CPU."""
    with TwoNodeCluster(tmp_path_factory.mktemp("one-cpu"), worker=False) as c:
        yield c


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("raynas: error: "), result.stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("supernet.replicas=2", "cannot place 2 supernet replicas x 1 CPU (set by supernet.replicas, "
                                "supernet.cpus_per_replica): the cluster has 1 node (1 CPU)"),
        ("search.cpus_per_trial=2", "cannot place 1 search trial x 2 CPU (set by search.cpus_per_trial, "
                                    "search.gpus_per_trial): the cluster has 1 node (1 CPU)"),
        ("retrain.gpus_per_trial=1", "cannot place 1 retrain trial x 1 CPU + 1 GPU (set by retrain.cpus_per_trial, "
                                     "retrain.gpus_per_trial): the cluster has 1 node (1 CPU + 0 GPU)"),
    ],
)  # fmt: skip
def test_what_cannot_be_placed_is_said_at_once(one_cpu, tmp_path, setting, expected):
    result = run_cli("search", "--address", one_cpu.address, *sets(tmp_path, extra=[setting]), timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    line = _error_line(result)
    assert expected in line, line
    assert "[2/4] supernet ..." not in result.stderr  # before any phase started


def test_with_a_wait_it_says_so_then_fails_with_one_line(one_cpu, tmp_path):
    result = run_cli("search", "--address", one_cpu.address, *sets(tmp_path, extra=["supernet.replicas=2"]),
                     timeout=300, RAYNAS_PLACEMENT_TIMEOUT_S="3")  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "[2/4] supernet ..." in result.stderr  # the wait comes with the phase's own request
    assert "cannot place 2 supernet replicas x 1 CPU" in result.stderr
    assert "waiting up to 3 s for more nodes (RAYNAS_PLACEMENT_TIMEOUT_S)" in result.stderr
    assert _error_line(result).endswith("after waiting 3 s; ask for less or add nodes")
    assert "Traceback" not in result.stderr


def test_a_bad_timeout_is_a_one_line_error(one_cpu, tmp_path):
    result = run_cli("search", "--address", one_cpu.address, *sets(tmp_path), timeout=300,
                     RAYNAS_PLACEMENT_TIMEOUT_S="soon")  # fmt: skip
    assert result.returncode == 2
    assert "RAYNAS_PLACEMENT_TIMEOUT_S must be a number of seconds >= 0, got 'soon'" in _error_line(result)


def test_a_wait_ends_when_a_node_joins(one_cpu):
    """As with an autoscaler: the request waits (demand handed to ``request_resources``) and goes
    on once a node that can hold it joins; the node is added once the waiting line was logged."""
    import threading

    import ray

    from raynas.train.placement import Request, require

    lines: list[str] = []
    joined = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if len(lines) == 1:  # the waiting line: now the "autoscaler" adds a node
            threading.Thread(target=lambda: (one_cpu.start_worker(), joined.set()), daemon=True).start()

    ray.init(address=one_cpu.address, log_to_driver=False)
    try:
        require(Request(what="supernet replicas", count=2, bundle={"CPU": 1.0}), log=log, timeout_s=240)
        assert joined.wait(60)
    finally:
        ray.shutdown()
    assert "waiting up to 240 s for more nodes" in lines[0]
    assert lines[-1] == "2 supernet replicas x 1 CPU: the cluster can place them now"
