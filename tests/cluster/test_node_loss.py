"""The worker node lost (its session SIGKILLed, on a progress trigger): the test cluster
itself, then mid-supernet, mid-search and mid-retrain; and the driver killed, then ``raynas search
--resume``. One cluster for the module: the ``cluster`` fixture starts a lost worker again before
each test."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal

import pytest
import torch

from raynas.train import Callback, load_checkpoint, train_supernet
from tests.cluster.test_replicas_across_nodes import Placements, across_nodes_config
from tests.train.conftest import FACTORY, slice_mnist1d

pytestmark = pytest.mark.slow


def weights_digest(state: dict) -> str:
    """sha256 over every tensor of a state dict, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class LoseWorkerNode(Callback):
    """Kills the worker node's session once the run has reported ``step`` global steps
    (a progress trigger, after the first epoch's checkpoint); records what it saw."""

    def __init__(self, cluster, step: int):
        self.cluster, self.step = cluster, step
        self.killed_at: int | None = None
        self.failures: list[str] = []

    def on_progress(self, run, progress):
        if self.killed_at is None and progress.step >= self.step:
            self.killed_at = progress.step
            self.cluster.kill_worker()

    def on_failure(self, run, error, attempt):
        self.failures.append(type(error).__name__)


class Counter:
    def __init__(self):
        self.n = 0

    def tick(self) -> int:
        self.n += 1
        return self.n

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def test_a_lost_node_loses_the_processes_of_its_own_process_groups_too():
    """Ray starts each worker process in a process group of its own, within the node's session:
    killing the node kills the whole session at once, so no worker goes on running user code."""
    import subprocess
    import sys

    from tests.cluster.twonode import kill_session
    from tests.experiment.test_resume import _alive

    child = "import os, time; os.setpgid(0, 0); print(os.getpid(), flush=True); time.sleep(600)"
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)"
    node = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, start_new_session=True)
    pid = int(node.stdout.readline())
    assert os.getpgid(pid) == pid != node.pid and os.getsid(pid) == node.pid
    kill_session(node)
    assert node.returncode == -signal.SIGKILL
    assert not _alive(pid)  # gone (or a zombie not yet reaped) as kill_session returns


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

    cluster.start_worker()
    assert len(cluster.alive_nodes()) == 2
    again = actor_cls.options(num_cpus=0.5, resources={"node_b": 0.01}).remote()
    assert ray.get(again.tick.remote()) == 1
    for actor in (on_a, again):
        ray.kill(actor)  # their CPUs free for the module's next test


def test_worker_node_lost_mid_supernet_continues_with_fewer_replicas(cluster, tmp_path, caplog):
    data = slice_mnist1d(384, 64)  # 6 steps per epoch with 4 replicas, 12 with 2
    config = across_nodes_config(epochs=3, keep_checkpoints=3)
    lose = LoseWorkerNode(cluster, step=9)  # in epoch 2, after epoch 1's checkpoint
    placements = Placements()
    out = tmp_path / "lost"
    with caplog.at_level(logging.WARNING, logger="raynas.train.trainer"):
        result = train_supernet(FACTORY, data, config, out_dir=out, callbacks=[lose, placements])
    # on a loaded machine Ray may still count the dead node when the first restart asks for 4 and
    # those replicas fail too: every failure is a replica failure, and the run ends on 2 replicas
    assert lose.killed_at == 9 and lose.failures and set(lose.failures) == {"ReplicaFailure"}
    seen = [len(p) for p in placements.seen]
    assert seen[0] == 4 and seen[-1] == 2, seen  # 2 + 2 on two nodes, ..., then 2 on the head
    assert len({p["node"] for p in placements.seen[-1]}) == 1
    assert (result.replicas, result.restarts, result.epochs) == (2, len(lose.failures), 3)
    assert result.steps == 6 + 12 + 12
    # (under load, placement waits add lines that name the replicas too)
    lines = [r.getMessage() for r in caplog.records if "the cluster now holds" in r.getMessage()]
    assert len(lines) == 1, lines  # the switch to fewer replicas is said once
    assert "the cluster now holds 2 of 4 replicas (a node was lost); continuing with 2 replicas from" in lines[0]
    assert "(epoch 1, step 6)" in lines[0]

    # the reference: 2 replicas resumed from the same epoch-1 checkpoint, uninterrupted
    reference_dir = tmp_path / "reference"
    (reference_dir / "from").mkdir(parents=True)
    shutil.copy(out / "checkpoints" / "epoch-0001.pt", reference_dir / "from" / "epoch-0001.pt")
    reference = train_supernet(FACTORY, data, across_nodes_config(epochs=3, replicas=2), out_dir=reference_dir / "run",
                               resume=reference_dir / "from" / "epoch-0001.pt")  # fmt: skip
    final, expected = load_checkpoint(result.checkpoint), load_checkpoint(reference.checkpoint)
    assert final["epoch"] == expected["epoch"] == 3 and final["step"] == expected["step"] == 30
    assert set(final["model"]) == set(expected["model"])
    assert all(torch.equal(final["model"][k], expected["model"][k]) for k in final["model"])
    print(f"\nsupernet node loss: final {weights_digest(final['model'])} == reference "
          f"{weights_digest(expected['model'])}")  # fmt: skip


# -- search and retrain: the real CLI on the cluster ------------------------------------------

N, K, EPOCHS = 8, 2, 3  # architectures; scored by each node's trial actor before the hold; retrain epochs


def _gated(tmp_path) -> list[str]:
    """The gated mnist1d model (tests/experiment/gated.py): each trial actor holds its (K+1)-th
    architecture, each retrain trial holds as its second epoch begins, until the gate files exist."""
    return [
        "model.factory=tests.experiment.gated:build",
        f"model.kwargs.search_gate={tmp_path / 'search-gate'}",
        f"model.kwargs.search_after={K}",
        f"model.kwargs.retrain_gate={tmp_path / 'retrain-gate'}",
        "model.kwargs.retrain_after=1",
        f"search.num_samples={N}",
        "search.max_concurrent=2",
        "search.cpus_per_trial=1",  # one trial per node: when two are running, one is on the worker
        "retrain.cpus_per_trial=1",
        f"retrain.epochs={EPOCHS}",
    ]


def _failures(tune_dir) -> list[int]:
    """Per trial of Tune's newest snapshot, how many times it failed (and was retried)."""
    import glob
    import json

    with open(sorted(glob.glob(str(tune_dir / "experiment_state-*.json")))[-1]) as f:
        data = json.load(f)
    return sorted(json.loads(metadata)["num_failures"] for _trial, metadata in data["trial_data"])


def test_worker_node_lost_mid_search_and_mid_retrain(cluster, tmp_path):
    """The worker node killed while each node holds a search trial, then while each holds a retrain
    trial after its first epoch's checkpoint: Tune retries the lost trial (a search trial from the
    start, a retrain trial from its checkpoint); every row is there once, nothing is done twice."""
    import pyarrow.parquet as pq

    from tests.experiment.cli_helpers import cli_args, env, kill_now, sets, wait_for
    from tests.experiment.test_resume import _holding, _lines, _snapshot, _trial_dirs

    root = tmp_path / "lost" / "nodes"
    search_gate, retrain_gate = tmp_path / "search-gate", tmp_path / "retrain-gate"
    cmd = cli_args("search", "--address", cluster.address, *sets(tmp_path / "lost", "nodes", _gated(tmp_path)))
    log = open(tmp_path / "driver.log", "w")
    import subprocess

    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        wait_for(lambda: _holding(search_gate) == 2, 400, "a search trial held on each node", proc)
        cluster.kill_worker()
        cluster.start_worker()  # back before the retrain: its two trials run one per node again
        search_gate.touch()

        def retrain_held() -> bool:
            running = [r for s, r in _snapshot(root / "tune_retrain").values() if s == "RUNNING"]
            return len(running) == 2 == _holding(retrain_gate) and all(r.get("epoch") == 1 for r in running)

        wait_for(retrain_held, 400, "a retrain trial held after its first epoch on each node", proc)
        cluster.kill_worker()
        retrain_gate.touch()
        assert proc.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_now(proc)
        log.close()

    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(search) == len({r["trial_id"] for r in search}) == N
    assert all(r["status"] == "ok" for r in search)
    assert len(_lines(tmp_path / "search-gate.scored")) == N  # the lost trial was held unscored: scored once
    assert len(_trial_dirs(root / "tune_search")) == N
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert sorted(r["rank"] for r in retrain) == [0, 1]
    assert all(r["status"] == "ok" and r["epochs"] == EPOCHS and r["test_accuracy"] is not None for r in retrain)
    validations = _lines(tmp_path / "retrain-gate.validations")
    per_trial = sorted(validations.count(r["trial_id"]) for r in retrain)
    assert per_trial == [EPOCHS, EPOCHS]  # the lost trial went on from its epoch-1 checkpoint
    assert _failures(root / "tune_search") == [0] * (N - 1) + [1]  # one trial lost and retried
    assert _failures(root / "tune_retrain") == [0, 1]
    print(f"\nsearch rows {len(search)} (unique {len({r['trial_id'] for r in search})}), retrain rows "
          f"{len(retrain)}, validations per retrain trial {per_trial}")  # fmt: skip


def test_driver_killed_mid_search_then_resumed_on_the_cluster(cluster, tmp_path):
    """The driver SIGKILLed while each node holds a search trial (2 x K scored before): ``raynas
    search --resume`` on the same cluster keeps the rows of before, scores the rest once each."""
    import pyarrow.parquet as pq

    from tests.experiment.cli_helpers import run_cli, sets, wait_for
    from tests.experiment.test_resume import _holding, _lines, _open, _snapshot, _start, _trial_dirs

    root = tmp_path / "driver" / "killed"
    gate = tmp_path / "search-gate"
    extra = [s for s in _gated(tmp_path) if "retrain" not in s] + ["retrain.top_k=1", "retrain.epochs=1"]
    proc = _start("search", "--address", cluster.address, *sets(tmp_path / "driver", "killed", extra))

    def held() -> bool:
        done = [s for s, _ in _snapshot(root / "tune_search").values() if s == "TERMINATED"]
        return _holding(gate) == 2 and len(done) == len(_lines(tmp_path / "search-gate.scored")) == 2 * K

    try:
        wait_for(held, 400, f"{2 * K} scored search trials and one held on each node", proc)
    finally:
        from tests.experiment.cli_helpers import kill_now

        kill_now(proc)
    before = {t: r for t, (s, r) in _snapshot(root / "tune_search").items() if s == "TERMINATED"}
    _open(gate)
    result = run_cli("search", "--resume", str(root), "--address", cluster.address, timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    rows = {r["trial_id"]: r for r in search}
    assert len(search) == len(rows) == N and all(r["status"] == "ok" for r in search)
    for trial_id, metrics in before.items():
        assert {k: rows[trial_id][k] for k in ("arch", "val_accuracy")} == {k: metrics[k] for k in ("arch", "val_accuracy")}
    assert len(_lines(tmp_path / "search-gate.scored")) == N and len(_trial_dirs(root / "tune_search")) == N
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(retrain) == 1 and retrain[0]["status"] == "ok"
    print(f"\ndriver killed: {len(before)} rows before, {len(search)} after (unique {len(rows)}), "
          f"{len(_lines(tmp_path / 'search-gate.scored'))} scored")  # fmt: skip
