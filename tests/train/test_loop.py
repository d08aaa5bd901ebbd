"""The replica and its step, in the calling process (local mode)."""

from __future__ import annotations

import math

import pytest
import torch

from raynas.train import ConfigError, SupernetReplica, lr_at, parameter_digest, train_supernet
from raynas.train.data import resolve_data, steps_per_epoch
from tests.train.conftest import FACTORY, small_config


def test_lr_schedule_warmup_cosine_constant():
    config = small_config(epochs=10, lr=0.1, warmup_epochs=2.0)
    assert lr_at(config, 0.0) == pytest.approx(0.0, abs=1e-6)
    assert lr_at(config, 1.0) == pytest.approx(0.05)
    assert lr_at(config, 2.0) == pytest.approx(0.1)
    assert lr_at(config, 6.0) == pytest.approx(0.05)
    assert lr_at(config, 10.0) == pytest.approx(0.0, abs=1e-12)
    constant = small_config(epochs=10, lr=0.1, lr_schedule="constant")
    assert {lr_at(constant, e) for e in (0.0, 5.5, 10.0)} == {0.1}


def _replica(data, **changes):
    replica = SupernetReplica(factory=FACTORY, data=data, config=small_config(**changes))
    replica.setup()
    return replica


def test_steps_train_and_report(small_data):
    replica = _replica(small_data, replicas=1)
    assert replica.steps_per_epoch == 640 // 32
    before = parameter_digest(replica.model)
    report = replica.run(5)
    assert parameter_digest(replica.model) != before
    assert (report["steps"], report["samples"], report["pos"], report["step"]) == (5, 160, 5, 5)
    assert math.isfinite(report["loss"]) and 0.0 <= report["accuracy"] <= 1.0
    assert sum(report["counts"]["op0"]) == 5 and len(report["counts"]["op0"]) == 6
    with pytest.raises(RuntimeError, match="steps left"):
        replica.end_epoch()
    with pytest.raises(RuntimeError, match="only 15 steps are left"):
        replica.run(16)
    replica.run(15)
    replica.end_epoch()
    assert (replica.epoch, replica.pos) == (1, 0)


def test_unchosen_candidates_are_not_updated(small_data):
    """Candidates off the path get no gradient, and the optimizer leaves them alone (no decay,
    no momentum), exactly as in a single-process NNI trainer."""
    replica = _replica(small_data, replicas=1, optimizer="sgd", lr=0.1, weight_decay=0.01)
    op0 = replica.model.ops[0]
    conv7 = {k: v.clone() for k, v in op0.choices[2].state_dict().items()}
    used_conv7 = False
    for _ in range(5):
        replica.run(1)
        used_conv7 |= replica.mutator.status()["op0"][2] == 1.0
        if not used_conv7:
            assert all(torch.equal(conv7[k], v) for k, v in op0.choices[2].state_dict().items())


def test_data_shards_are_disjoint_and_cover_the_epoch(small_data):
    config = small_config()
    shards = []
    for rank in range(2):
        replica = SupernetReplica(factory=FACTORY, data=small_data, config=config, rank=rank, world_size=2)
        replica.setup()
        shards.append(set(replica._shard_indices().tolist()))
    assert not shards[0] & shards[1]
    assert len(shards[0]) == len(shards[1]) == 320


def test_user_errors(small_data):
    with pytest.raises(ConfigError, match=r"supernet.batch_size=4096 is larger than a replica's shard"):
        steps_per_epoch(640, small_config(batch_size=4096), 2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16.*CUDA"):
            _replica(small_data, precision="fp16")
    with pytest.raises(KeyError, match="no 'train' split"):
        resolve_data({"val": small_data["val"]})
    with pytest.raises(TypeError, match="mapping of split"):
        resolve_data(42)
    with pytest.raises(ValueError, match="factory"):
        _bad = SupernetReplica(factory="no_colon", data=small_data, config=small_config())
        _bad.setup()


def test_bf16_autocast_trains_on_cpu(tmp_path, small_data):
    result = train_supernet(
        FACTORY, small_data, small_config(precision="bf16", epochs=1), out_dir=tmp_path, local=True
    )
    assert result.epochs == 1 and math.isfinite(result.history[0]["loss"])


def test_local_training_learns(tmp_path, small_data):
    config = small_config(epochs=6, lr=3e-3, checkpoint_every=2, keep_checkpoints=1)
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True)
    losses = [h["loss"] for h in result.history]
    assert result.local and result.replicas == 1 and result.epochs == 6 and result.steps == 6 * 20
    assert losses[-1] < losses[0] - 0.2
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["epoch-0006.pt", "last.pt"]  # every 2nd epoch, one epoch file kept
    counts = result.history[-1]["counts"]["op1"]
    assert sum(counts) == 20 and all(c >= 0 for c in counts)
    assert torch.get_num_threads() >= 1


def test_in_place_distillation_trains_the_largest_path_every_step(tmp_path, small_data):
    """``distill``: each step also trains the largest path (all conv7, every skip), whose
    outputs teach the sampled path; without it conv7's weights only move when sampled."""
    replica = SupernetReplica(factory=FACTORY, data=small_data, config=small_config(replicas=1, distill=0.5))
    replica.setup(None)
    conv7 = [m for m in replica.model.modules() if isinstance(m, torch.nn.Conv1d) and m.kernel_size == (7,)]
    assert len(conv7) == 4
    before = [c.weight.detach().clone() for c in conv7]
    report = replica.run(3)
    assert all(not torch.equal(b, c.weight) for b, c in zip(before, conv7))  # every step updates conv7
    assert math.isfinite(report["loss"])
    assert sum(report["counts"]["op0"]) == 3  # the counts are the sampled paths only
    result = train_supernet(FACTORY, small_data, small_config(distill=0.5, epochs=3, lr=3e-3), out_dir=tmp_path, local=True)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"distill": 1.5}, "supernet.distill must be between 0 and 1, got 1.5"),
        ({"distill": 0.5, "algorithm": "darts"}, r"supernet.distill works with sampled paths \(random, fair, spos\), not with supernet.algorithm='darts'"),
    ],
)
def test_distill_setting_is_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**changes)
