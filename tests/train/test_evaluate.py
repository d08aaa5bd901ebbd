"""Weight-sharing evaluation: fixed architecture, supernet weights, BatchNorm recalibration."""

from __future__ import annotations

import pytest
import torch

from raynas.nas import RandomMutator, SearchSpaceError, to_parameters
from raynas.train import WeightSharingEvaluator, evaluate_architecture, recalibrate_batchnorm, train_supernet
from raynas.zoo.mnist1d import build_supernet
from searchers.errors import ConfigError, ConfigKeyError
from tests.train.conftest import FACTORY, small_config

CONV7 = {"op0": "conv7", "op1": "conv7", "op2": "conv7", "op3": "conv7", "skip1": [], "skip2": [], "skip3": []}
IDENTITY = {k: ("identity" if k.startswith("op") else []) for k in CONV7}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("supernet")
    return train_supernet(FACTORY, small_data, small_config(epochs=4), out_dir=out, local=True)


def test_metrics_and_architecture_forms(trained, small_data):
    evaluator = WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, bn_batches=5, batch_size=32)
    metrics = evaluator.evaluate(CONV7)
    assert set(metrics) == {"val_accuracy", "val_loss", "params", "flops"}
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0
    assert metrics["params"] == 16 * 5 + 32 + 4 * (16 * 16 * 7 + 32) + 170
    assert metrics["flops"] == 40 * (16 * 5 + 16) + 4 * 40 * (16 * 16 * 7 + 16) + 160
    # the same architecture as indices and as tuner parameters scores the same
    by_index = {k: (2 if k.startswith("op") else []) for k in CONV7}
    assert evaluator.evaluate(by_index) == metrics
    assert evaluator.evaluate(to_parameters(CONV7, build_supernet())) == metrics
    assert evaluator.evaluate(IDENTITY)["params"] == 16 * 5 + 32 + 170
    # the same numbers from a checkpoint path and from the one-shot function
    again = evaluate_architecture(
        FACTORY, CONV7, weights=trained.checkpoint, data=small_data, bn_batches=5, batch_size=32
    )
    assert again == metrics


def test_bad_architectures_name_the_key(trained, small_data):
    evaluator = WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data)
    with pytest.raises(SearchSpaceError, match="op0"):
        evaluator.evaluate({**CONV7, "op0": "conv9"})
    with pytest.raises(SearchSpaceError, match="skip3"):
        evaluator.evaluate({k: v for k, v in CONV7.items() if k != "skip3"})
    with pytest.raises(ConfigError, match="bn_batches must be an integer >= 0, got -1"):
        WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, bn_batches=-1)
    with pytest.raises(ConfigKeyError, match="^the data has no split 'test' \\(splits: "):
        WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, split="test").evaluate(CONV7)


def test_recalibration_resets_and_reestimates_batchnorm(trained, small_data):
    evaluator = WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, bn_batches=3, batch_size=32)
    model, _mutator = evaluator.build(CONV7)
    bn = model.ops[0][1]
    supernet_mean = bn.running_mean.clone()
    x = small_data["train"].tensors[0][:96]
    assert recalibrate_batchnorm(model, [x[:32], x[32:64], x[64:]]) == 5  # stem + 4 conv7 blocks
    assert not torch.equal(bn.running_mean, supernet_mean)
    assert bn.num_batches_tracked.item() == 3 and bn.momentum == 0.1
    # cumulative average: the mean equals the average of the three batch means
    with torch.no_grad():
        model.train()
        means = [model.ops[0][0](model.stem(b)).mean(dim=(0, 2)) for b in (x[:32], x[32:64], x[64:])]
    expected = torch.stack(means).mean(dim=0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    # bn_batches=0 keeps the supernet's own statistics (which mix every path's); they differ
    stale = WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, bn_batches=0)
    kept, _ = stale.build(CONV7)
    supernet = trained.state_dict()
    assert torch.equal(kept.ops[0][1].running_mean, supernet["ops.0.conv7.1.running_mean"])
    assert stale.evaluate(CONV7)["val_loss"] != evaluator.evaluate(CONV7)["val_loss"]


def test_random_architectures_score_differently(trained, small_data):
    evaluator = WeightSharingEvaluator(factory=FACTORY, weights=trained, data=small_data, bn_batches=5, batch_size=32)
    mutator = RandomMutator(build_supernet(), seed=5)
    scores = {evaluator.evaluate(mutator.export())["val_accuracy"] for _ in range(6)}
    assert len(scores) > 1
