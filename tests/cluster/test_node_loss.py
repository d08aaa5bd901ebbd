"""The worker node lost (its process group SIGKILLed, on a progress trigger) mid-supernet,
mid-search and mid-retrain; and the driver killed, then ``raynas search --resume``."""

from __future__ import annotations

import hashlib
import logging
import shutil

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
    """Kills the worker node's process group once the run has reported ``step`` global steps
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


def test_worker_node_lost_mid_supernet_continues_with_fewer_replicas(cluster, tmp_path, caplog):
    data = slice_mnist1d(384, 64)  # 6 steps per epoch with 4 replicas, 12 with 2
    config = across_nodes_config(epochs=3, keep_checkpoints=3)
    lose = LoseWorkerNode(cluster, step=9)  # in epoch 2, after epoch 1's checkpoint
    placements = Placements()
    out = tmp_path / "lost"
    try:
        with caplog.at_level(logging.WARNING, logger="raynas.train.trainer"):
            result = train_supernet(FACTORY, data, config, out_dir=out, callbacks=[lose, placements])
    finally:
        if len(cluster.alive_nodes()) < 2:
            cluster.start_worker()  # the module's next test finds two nodes again
    assert lose.killed_at == 9 and lose.failures == ["ReplicaFailure"]
    assert [len(p) for p in placements.seen] == [4, 2]  # 2 + 2 on two nodes, then 2 on the head
    assert len({p["node"] for p in placements.seen[1]}) == 1
    assert (result.replicas, result.restarts, result.epochs) == (2, 1, 3)
    assert result.steps == 6 + 12 + 12
    (line,) = [r.getMessage() for r in caplog.records if "replicas" in r.getMessage()]
    assert "the cluster now holds 2 of 4 replicas (a node was lost); continuing with 2 replicas from" in line
    assert "(epoch 1, step 6)" in line

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
