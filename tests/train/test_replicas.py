"""Replicas on a real local Ray: in step, shared/independent paths, recovery, resume, local <-> Ray."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from raynas.train import Callback, ReplicaFailure, load_checkpoint, train_supernet
from raynas.train._shm import shm_dir, shm_supported
from tests.train.conftest import FACTORY, small_config
from tests.train.helpers import EpochEndStates, disagreeing

pytestmark = pytest.mark.usefixtures("ray_local")


def _shm_files() -> set[str]:
    return {name for name in os.listdir(shm_dir()) if name.startswith("raynas-allreduce-")}


def _equal_states(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# every sync path of shared sampling: shared memory ("auto" here) and the backend's bucketed
# all-reduce; two replicas' sums are the same floats either way, so one reference serves both
SYNC_PATHS = pytest.mark.parametrize("allreduce", ["auto", "backend"])


def _path(allreduce: str) -> str:
    """The gradient path ``supernet.allreduce`` gives two replicas on this machine."""
    return "shm" if allreduce == "auto" and shm_supported() else "gloo"


@pytest.mark.parametrize(
    ("sampling", "algorithm", "allreduce", "distill"),
    [
        ("shared", "random", "backend", 0.0),
        ("independent", "random", "backend", 0.0),
        ("shared", "random", "auto", 0.0),
        ("independent", "random", "auto", 0.0),
        ("shared", "fair", "auto", 0.0),
        ("shared", "random", "backend", 0.5),
        ("independent", "random", "auto", 0.5),
    ],
)
def test_two_replicas_stay_bit_identical(tmp_path, small_data, sampling, algorithm, allreduce, distill):
    """20 steps with 2 replicas: identical parameters after every step; shared mode trains the
    same path on both replicas, independent mode different ones. Over gloo (``backend``) shared
    mode reduces the gradients bucket by bucket during backward, independent mode in one flat
    all-reduce after it; ``auto`` puts two replicas of one x86-64 node in shared memory. With
    in-place distillation each step also trains the largest path."""
    shm_before = _shm_files()
    config = small_config(sampling=sampling, algorithm=algorithm, epochs=2, allreduce=allreduce, distill=distill)
    ends = EpochEndStates()
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, trace=True, callbacks=[ends])
    assert result.allreduce == _path(allreduce)
    assert _shm_files() == shm_before  # the shared buffer's name is removed once mapped
    rank0, rank1 = result.trace
    assert [t["step"] for t in rank0] == [t["step"] for t in rank1] == list(range(1, 21))
    digests = [t["digest"] for t in rank0]
    assert digests == [t["digest"] for t in rank1]
    assert len(set(digests)) == 20  # every step changed the weights
    same_path = [a["path"] == b["path"] for a, b in zip(rank0, rank1)]
    if sampling == "shared":
        assert all(same_path)
    else:
        assert sum(same_path) <= 2
    assert len({str(t["path"]) for t in rank0}) > 10  # paths change from step to step
    # each epoch ends with every buffer equal too: BatchNorm statistics averaged; the batch counts
    # agree when the replicas train the same paths (independent paths count different batches)
    assert len(ends.states) == 2
    for states in ends.states:
        assert disagreeing(states, integers=sampling == "shared") == []
        assert any(k.endswith("running_mean") for k in states[0])
    data = load_checkpoint(result.checkpoint)
    assert data["replicas"] == 2 and len(data["rank_states"]) == 2


def test_without_bn_sync_buffers_the_batchnorm_statistics_stay_per_replica(tmp_path, small_data):
    """``bn_sync_buffers: false``: the weights stay bit-identical, each replica keeps the running
    statistics of its own data shard."""
    ends = EpochEndStates()
    config = small_config(epochs=1, bn_sync_buffers=False)
    train_supernet(FACTORY, small_data, config, out_dir=tmp_path, callbacks=[ends])
    (states,) = ends.states
    differ = disagreeing(states)
    assert differ and all(k.endswith(("running_mean", "running_var")) for k in differ)
    assert {"stem.1.running_mean", "stem.1.running_var"} <= set(differ)  # every batch passes the stem


class _Interrupt(Exception):
    pass


class _StopAfterEpoch(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, run, metrics):
        if metrics.epoch + 1 == self.epoch:
            raise _Interrupt(f"stopped after epoch {self.epoch}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_data):
    """A 3-epoch run with 2 replicas and shared paths: the reference for resume and recovery."""
    out = tmp_path_factory.mktemp("uninterrupted")
    result = train_supernet(FACTORY, small_data, small_config(epochs=3), out_dir=out)
    return load_checkpoint(result.checkpoint)


@SYNC_PATHS
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, small_data, uninterrupted, allreduce):
    config = small_config(epochs=3, allreduce=allreduce)
    with pytest.raises(_Interrupt):
        train_supernet(FACTORY, small_data, config, out_dir=tmp_path, callbacks=[_StopAfterEpoch(2)])
    assert load_checkpoint(tmp_path)["epoch"] == 2
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, resume=True)
    assert (result.epochs, result.steps) == (3, 30)
    assert result.allreduce == _path(allreduce)
    final = load_checkpoint(result.checkpoint)
    assert _equal_states(final["model"], uninterrupted["model"])
    assert final["rank_states"][0]["mutator"]["_extra_state"] == uninterrupted["rank_states"][0]["mutator"]["_extra_state"]
    assert [h["epoch"] for h in final["history"]] == [0, 1, 2]


class _KillReplica1(Callback):
    """``ray.kill`` replica 1 at step 10 (the end of epoch 1, before its checkpoint: the restart
    begins from scratch); records the first step each attempt reports."""

    def __init__(self):
        self.done = False
        self.failures: list[str] = []
        self.first_steps: dict[int, int] = {}

    def on_progress(self, run, progress):
        import ray

        self.first_steps.setdefault(run.attempt, progress.step)
        if progress.step >= 10 and not self.done:
            self.done = True
            ray.kill(run.replicas[1], no_restart=True)

    def on_failure(self, run, error, attempt):
        self.failures.append(type(error).__name__)


class DieInStep:
    """The loss of a replica (cross-entropy) that SIGKILLs rank 0's own process in the middle of
    its ``step``-th step (while rank 1 goes on into the gradient all-reduce), once: ``marker``
    records that it happened. Triggered by the step count, not by time."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker, self.calls = step, marker, 0

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self.calls += 1  # one call per step (random sampling, no distillation), counted per process
        if self.calls == self.step and dist.get_rank() == 0 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return nn.functional.cross_entropy(out, target)


@SYNC_PATHS
def test_killed_replicas_recover_from_the_last_checkpoint(tmp_path, small_data, uninterrupted, allreduce):
    """Replica 1 killed by Ray at step 10 (restart from scratch), then replica 0's process killed
    in the middle of step 26 (restart from the epoch-2 checkpoint)."""
    killer = _KillReplica1()
    marker = tmp_path / "rank0-killed"
    result = train_supernet(
        FACTORY,
        small_data,
        small_config(epochs=3, allreduce=allreduce),
        out_dir=tmp_path / "run",
        callbacks=[killer],
        criterion=DieInStep(26, str(marker)),
    )
    assert killer.done and marker.exists() and result.allreduce == _path(allreduce)
    assert result.restarts == 2 and killer.failures == ["ReplicaFailure", "ReplicaFailure"]
    assert (result.epochs, result.steps) == (3, 30)
    assert killer.first_steps == {0: 5, 1: 5, 2: 25}  # from scratch, then from the epoch-2 checkpoint
    final = load_checkpoint(result.checkpoint)
    assert final["epoch"] == 3
    # restarts replay from a checkpoint, so the weights equal an uninterrupted run's (shared mode)
    assert _equal_states(final["model"], uninterrupted["model"])


class _AlwaysKill(Callback):
    def on_progress(self, run, progress):
        import ray

        ray.kill(run.replicas[0], no_restart=True)


def test_recovery_gives_up_after_max_failures(tmp_path, small_data):
    with pytest.raises(ReplicaFailure, match=r"failed 2 times \(supernet.max_failures=1\)"):
        train_supernet(
            FACTORY, small_data, small_config(epochs=1, max_failures=1), out_dir=tmp_path, callbacks=[_AlwaysKill()]
        )


class _Boom(Exception):
    pass


def _bad_criterion(out, target):
    raise _Boom("bad loss")


def test_a_user_error_in_a_replica_is_not_retried(tmp_path, small_data):
    with pytest.raises(_Boom, match="bad loss"):
        train_supernet(FACTORY, small_data, small_config(epochs=1), out_dir=tmp_path, criterion=_bad_criterion)


def test_local_and_ray_checkpoints_load_in_each_other(tmp_path, small_data):
    local_dir, ray_dir, back_dir = tmp_path / "local", tmp_path / "ray", tmp_path / "back"
    local = train_supernet(FACTORY, small_data, small_config(epochs=1), out_dir=local_dir, local=True)
    assert local.history[0]["loss"] > 0 and local.steps == 20
    # one Ray replica runs the very same loop as local mode: same weights
    one = train_supernet(FACTORY, small_data, small_config(epochs=1, replicas=1), out_dir=tmp_path / "one")
    assert _equal_states(one.state_dict(), local.state_dict())
    # local checkpoint -> 2 replicas on Ray (epoch 2), then Ray checkpoint -> local (epoch 3)
    on_ray = train_supernet(FACTORY, small_data, small_config(epochs=2), out_dir=ray_dir, resume=local.checkpoint)
    assert (on_ray.epochs, on_ray.steps, on_ray.local) == (2, 30, False)
    assert not _equal_states(on_ray.state_dict(), local.state_dict())
    back = train_supernet(
        FACTORY, small_data, small_config(epochs=3), out_dir=back_dir, local=True, resume=on_ray.checkpoint
    )
    assert (back.epochs, back.steps, back.local) == (3, 50, True)
    assert [h["epoch"] for h in back.history] == [0, 1, 2]
    # a Ray checkpoint with nothing left to train loads unchanged in local mode, and vice versa
    same = train_supernet(
        FACTORY, small_data, small_config(epochs=2), out_dir=tmp_path / "same", local=True, resume=on_ray.checkpoint
    )
    assert _equal_states(same.state_dict(), on_ray.state_dict())
    same_ray = train_supernet(
        FACTORY, small_data, small_config(epochs=3), out_dir=tmp_path / "same_ray", resume=back.checkpoint
    )
    assert _equal_states(same_ray.state_dict(), back.state_dict())
