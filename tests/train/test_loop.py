"""The replica and its step, in the calling process (local mode)."""

from __future__ import annotations

import math

import pytest
import torch

from raynas.nas import LayerChoice, Mutator
from raynas.train import ConfigError, SupernetReplica, lr_at, parameter_digest, train_supernet
from raynas.train.data import resolve_data, steps_per_epoch
from searchers.errors import ConfigTypeError
from tests.train.conftest import FACTORY, small_config


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``SupernetReplica.setup`` sets torch's thread count (``supernet.threads``): later tests get
    the caller's count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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


class _ScriptedMutator(Mutator):
    """Step ``s`` puts candidate ``(s + i) % n`` of the ``i``-th LayerChoice on the path, and every
    input of every InputChoice: over ``n`` steps each candidate is chosen once, unchosen otherwise."""

    def sample_search(self):
        step = self.steps = getattr(self, "steps", -1) + 1
        out = {}
        for i, (key, mutable) in enumerate(self.choice_mutables.items()):
            if isinstance(mutable, LayerChoice):
                out[key] = torch.arange(mutable.length) == (step + i) % mutable.length
            else:
                out[key] = torch.ones(mutable.length, dtype=torch.bool)
        return out

    def sample_final(self):
        return self.sample_search()


def _scripted(model, *, config, rank, example):  # noqa: ARG001 - the mutator_factory signature
    return _ScriptedMutator(model)


def test_unchosen_candidates_are_not_updated(small_data):
    """Candidates off the path get no gradient, and the optimizer leaves them alone (no decay,
    no momentum, no BatchNorm statistics), exactly as in a single-process NNI trainer: checked for
    every candidate of every LayerChoice, also after it was on an earlier path (momentum set)."""
    replica = SupernetReplica(
        factory=FACTORY,
        data=small_data,
        config=small_config(replicas=1, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
        mutator_factory=_scripted,
    )
    replica.setup()
    layers = {k: m for k, m in replica.mutator.choice_mutables.items() if isinstance(m, LayerChoice)}
    assert len(layers) == 4 and {m.length for m in layers.values()} == {6}

    def states():
        return {
            (k, j): {n: t.detach().clone() for n, t in c.state_dict().items()}
            for k, m in layers.items()
            for j, c in enumerate(m.choices)
        }

    unchanged = changed = 0
    for step in range(6):
        before = states()
        replica.run(1)
        path = replica.mutator.status()
        for (key, j), state in states().items():
            same = all(torch.equal(before[(key, j)][n], t) for n, t in state.items())
            if path[key][j] == 0.0:
                assert same, f"step {step + 1}: unchosen candidate {j} of {key} changed"
                unchanged += 1
            elif state:  # a chosen candidate with weights (not maxpool3 / identity) trains
                assert not same, f"step {step + 1}: chosen candidate {j} of {key} did not train"
                changed += 1
    assert unchanged == 6 * 4 * 5 and changed == 4 * 4  # every candidate was both chosen and unchosen


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
    with pytest.raises(ConfigError, match="no 'train' split"):
        resolve_data({"val": small_data["val"]})
    with pytest.raises(ConfigTypeError, match="mapping of split"):
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
        ({"distill": 1.5}, "supernet.distill must be >= 0.0 and <= 1.0, got 1.5"),
        ({"distill": 0.5, "algorithm": "darts"}, r"supernet.distill works with sampled paths \(random, fair, spos\), not with supernet.algorithm='darts'"),
    ],
)
def test_distill_setting_is_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**changes)
