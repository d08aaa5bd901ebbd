"""The shared-memory all-reduce: exact sums, bit-identical results, several nodes, dead peers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from raynas.train import Callback, SupernetConfig
from raynas.train._shm import SharedMemoryTimeout, ShmAllReduce, agree_everywhere, shm_name, shm_path, shm_supported
from raynas.train.config import ConfigError
from raynas.train.replicas import shm_plan
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not shm_supported(), reason="shared-memory all-reduce needs x86-64")


def _tensors(rank: int, call: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 * call + rank)
    return torch.randn(37 + 101 * call, generator=gen)


def _worker(rank: int, nodes: list[list[int]], port: int, names: list[str], calls: int, queue) -> None:
    import torch.distributed as dist

    world = sum(len(n) for n in nodes)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    node = next(i for i, ranks in enumerate(nodes) if rank in ranks)
    leaders = [ranks[0] for ranks in nodes]
    group = dist.new_group(ranks=leaders) if len(nodes) > 1 else None
    reducer = ShmAllReduce(
        path=shm_path(names[node]),
        local_rank=nodes[node].index(rank),
        local_size=len(nodes[node]),
        capacity=37 + 101 * calls,
        timeout_s=30.0,
        leaders=group,
    )
    assert reducer.attach(agree_everywhere)
    out = []
    for call in range(calls):
        flat = _tensors(rank, call)
        reducer.all_reduce(flat)
        out.append(flat.numpy().tobytes())
    queue.put((rank, out))
    dist.barrier()
    dist.destroy_process_group()


def _run(nodes: list[list[int]], calls: int) -> dict[int, list[bytes]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    names = [shm_name() for _ in nodes]
    port = free_port()
    world = sum(len(n) for n in nodes)
    procs = [ctx.Process(target=_worker, args=(r, nodes, port, names, calls, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for name in names:
        with pytest.raises(FileNotFoundError):
            open(shm_path(name), "rb")  # the name is gone once every rank mapped the buffer
    return results


def test_one_node_sums_exactly_and_every_rank_reads_the_same_bytes():
    results = _run([[0, 1, 2]], calls=20)
    for call in range(20):
        expected = _tensors(0, call) + _tensors(1, call) + _tensors(2, call)  # rank order
        got = [results[r][call] for r in range(3)]
        assert got[0] == got[1] == got[2]
        assert got[0] == expected.numpy().tobytes()


def test_two_nodes_combine_through_their_leaders():
    results = _run([[0, 1], [2, 3]], calls=5)
    for call in range(5):
        expected = sum(_tensors(r, call) for r in range(4))
        got = [results[r][call] for r in range(4)]
        assert got[0] == got[1] == got[2] == got[3]
        torch.testing.assert_close(torch.frombuffer(bytearray(got[0]), dtype=torch.float32), expected)


def test_a_missing_peer_times_out_with_the_late_rank_named(tmp_path):
    path = str(tmp_path / "buffer")
    first = ShmAllReduce(path=path, local_rank=0, local_size=2, capacity=8, timeout_s=0.3)
    first.create()
    first.open()
    with pytest.raises(SharedMemoryTimeout, match=r"timed out after 0.3 s waiting for local ranks \[1\]"):
        first.all_reduce(torch.ones(8))
    with pytest.raises(ValueError, match="9 elements exceeds the shared buffer's capacity 8"):
        first.all_reduce(torch.ones(9))
    first.close()


def test_a_buffer_that_cannot_be_made_leaves_nothing_and_says_why(tmp_path):
    """``attach`` returns False (so ``auto`` falls back to the backend) when a node cannot make
    its buffer, e.g. a full ``/dev/shm``; space is reserved up front, never a SIGBUS later."""
    missing = ShmAllReduce(
        path=str(tmp_path / "no-such-dir" / "buf"), local_rank=0, local_size=1, capacity=8, timeout_s=1
    )
    votes = []
    assert not missing.attach(lambda ok: votes.append(ok) or ok)
    assert votes == [False] and "could not make" in missing.error and str(missing.nbytes) in missing.error
    # this rank is fine, a peer on another node is not: the buffer is removed again
    path = tmp_path / "buf"
    fine = ShmAllReduce(path=str(path), local_rank=0, local_size=1, capacity=8, timeout_s=1)
    assert not fine.attach(lambda ok: False)
    assert not path.exists()
    path.write_bytes(b"someone else's")  # never two groups in one file, and theirs stays
    taken = ShmAllReduce(path=str(path), local_rank=0, local_size=1, capacity=8, timeout_s=1)
    assert not taken.attach(lambda ok: ok)
    assert "File exists" in taken.error and path.read_bytes() == b"someone else's"


def test_plan_groups_ranks_by_node():
    same = shm_plan([{"node": "a", "shm": True}, {"node": "a", "shm": True}])
    assert [(p["local_rank"], p["local_size"], p["leaders"]) for p in same] == [(0, 2, None), (1, 2, None)]
    assert same[0]["name"] == same[1]["name"]
    two = shm_plan([{"node": n, "shm": True} for n in ("a", "b", "a", "b")])
    assert [p["local_rank"] for p in two] == [0, 0, 1, 1]
    assert all(p["leaders"] == [0, 1] for p in two)
    assert two[0]["name"] == two[2]["name"] != two[1]["name"]
    assert shm_plan([{"node": n, "shm": True} for n in ("a", "b")]) == [None, None]  # one per node
    assert shm_plan([{"node": "a", "shm": True}, {"node": "a", "shm": False}]) == [None, None]


def test_allreduce_setting_is_checked():
    with pytest.raises(ConfigError, match=r"supernet.allreduce must be one of auto, shm, backend, got 'nccl'"):
        SupernetConfig(allreduce="nccl")


def _replica_worker(rank: int, port: int, allreduce: str, queue) -> None:
    from raynas.train.replica import SupernetReplica
    from tests.train.conftest import FACTORY, slice_mnist1d, small_config

    replica = SupernetReplica(
        factory=FACTORY, data=slice_mnist1d(), config=small_config(allreduce=allreduce), rank=rank, world_size=2
    )
    # a buffer name under a directory that does not exist: the node cannot make its buffer
    spec = {"name": f"missing-{port}/buffer", "local_rank": rank, "local_size": 2, "leaders": None}
    replica.connect(init_method=f"tcp://127.0.0.1:{port}", shm=spec)
    try:
        info = replica.setup(None)
        replica.run(2)
        queue.put((rank, info["allreduce"], replica.digest()))
    except ConfigError as exc:
        queue.put((rank, "error", str(exc)))
    finally:
        replica.close()


@pytest.mark.parametrize("allreduce", ["auto", "shm"])
def test_replicas_fall_back_to_gloo_or_refuse_when_the_buffer_cannot_be_made(allreduce):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_replica_worker, args=(r, port, allreduce, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    if allreduce == "auto":  # trains on over gloo, still in step
        assert [r[1] for r in results] == ["gloo", "gloo"] and results[0][2] == results[1][2]
    else:
        assert [r[1] for r in results] == ["error", "error"]
        assert results[0][2].startswith("supernet.allreduce is 'shm' but could not make ")
        assert results[1][2].startswith("supernet.allreduce is 'shm' but another replica could not make its node's")


class _Pids(Callback):
    def on_train_start(self, run):
        self.pids = list(run.pids)


def _worker_log(pid: int) -> str:
    """What the Ray worker process ``pid`` wrote to stderr (Ray keeps it in the session's logs)."""
    import ray

    logs = ray._private.worker._global_node.get_logs_dir_path()
    return "".join(path.read_text() for path in Path(logs).glob(f"worker-*-{pid}.err"))


@pytest.mark.parametrize("allreduce", ["auto", "shm"])
def test_ray_replicas_log_why_they_fall_back_or_refuse(ray_local, tmp_path, monkeypatch, allreduce):
    """Through ``RayReplicas``: the driver plans a buffer name that cannot be made on the node;
    ``auto`` trains over gloo and each replica logs the reason, ``shm`` refuses with the rule
    (inside the Ray task error that carries it to the driver)."""
    from raynas.train import ConfigError as TrainConfigError
    from raynas.train import replicas, train_supernet
    from tests.train.conftest import FACTORY, slice_mnist1d, small_config

    missing = f"missing-{tmp_path.name}"
    monkeypatch.setattr(replicas, "shm_name", lambda: f"{missing}/buffer")
    pids = _Pids()
    config = small_config(epochs=1, allreduce=allreduce)
    if allreduce == "shm":
        with pytest.raises(TrainConfigError, match=r"supernet.allreduce is 'shm' but (could not make|another replica)"):
            train_supernet(FACTORY, slice_mnist1d(), config, out_dir=tmp_path, callbacks=[pids])
        return
    result = train_supernet(FACTORY, slice_mnist1d(), config, out_dir=tmp_path, callbacks=[pids])
    assert result.allreduce == "gloo"
    rank0, rank1 = (_worker_log(pid) for pid in pids.pids)
    assert re.search(
        rf"shared-memory all-reduce unavailable \(could not make \d+ bytes at \S*{missing}/buffer: .*No such file"
        r".*\); averaging gradients over gloo",
        rank0,
    ), rank0[-2000:]
    assert (
        "shared-memory all-reduce unavailable (another replica could not make its node's shared buffer); "
        "averaging gradients over gloo" in rank1
    ), rank1[-2000:]
