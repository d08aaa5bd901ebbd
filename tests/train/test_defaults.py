"""The default supernet settings on mnist1d: weight sharing separates a strong path from a weak one."""

from __future__ import annotations

import pytest

from raynas.experiment import ExperimentConfig
from raynas.train import SupernetConfig, WeightSharingEvaluator, train_supernet
from tests.train.conftest import FACTORY

CONV7 = {"op0": "conv7", "op1": "conv7", "op2": "conv7", "op3": "conv7", "skip1": [], "skip2": [], "skip3": []}
IDENTITY = {k: ("identity" if k.startswith("op") else []) for k in CONV7}


@pytest.mark.slow
def test_default_settings_rank_conv7_far_above_identity(tmp_path):
    """Default settings (local mode, so one replica), full mnist1d: the all-conv7 path scores
    >= 90% by weight sharing, the all-identity path far lower (stand-alone: ~98% vs ~40%)."""
    config = SupernetConfig(progress=False, tensorboard=False)
    result = train_supernet(FACTORY, "raynas.zoo.mnist1d:load_data", config, out_dir=tmp_path, local=True)
    evaluator = WeightSharingEvaluator(
        factory=FACTORY,
        weights=result,
        data="raynas.zoo.mnist1d:load_data",
        bn_batches=ExperimentConfig().search.bn_batches,  # what the search phase recalibrates with
        batch_size=config.batch_size,
    )
    conv7 = evaluator.evaluate(CONV7)["val_accuracy"]
    identity = evaluator.evaluate(IDENTITY)["val_accuracy"]
    assert conv7 >= 0.90
    assert identity <= conv7 - 0.4
