"""Retraining builds its optimizer, learning-rate schedule, device and evaluation through the same
functions as supernet training, from the ``retrain`` section's own settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raynas.experiment.config import ConfigError, load_config
from raynas.retrain import RetrainSetup, train_fixed
from raynas.train.evaluate import evaluate_loop
from raynas.train.step import WeightStep, lr_at
from raynas.zoo.mnist1d import build_supernet, load_data

ARCH = {"op0": "conv3", "op1": "conv3", "op2": "identity", "op3": "conv3", "skip1": [], "skip2": [], "skip3": []}


def _setup(**changes) -> RetrainSetup:
    base = dict(
        model_factory=build_supernet,
        data_factory=load_data,
        archs=[ARCH],
        search_scores=[None],
        epochs=4,
        optimizer="sgd",
        lr=0.1,
        weight_decay=0.0,
        batch_size=512,
        seed=0,
    )
    return RetrainSetup(**{**base, **changes})


def test_the_retrain_section_reaches_the_shared_weight_step():
    config = load_config(None, ["retrain.optimizer=sgd", "retrain.momentum=0.5", "retrain.nesterov=true"])
    assert (config.retrain.momentum, config.retrain.nesterov, config.retrain.grad_clip) == (0.5, True, None)
    setup = _setup(momentum=config.retrain.momentum, nesterov=config.retrain.nesterov)
    step = WeightStep(nn.Linear(2, 2), setup, device=torch.device("cpu"), criterion=nn.functional.cross_entropy)
    group = step.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.5, True)
    # the defaults are what retraining always used: SGD momentum 0.9, no Nesterov
    default = WeightStep(nn.Linear(2, 2), _setup(), device=torch.device("cpu"), criterion=nn.functional.cross_entropy)
    assert (default.optimizer.param_groups[0]["momentum"], default.optimizer.param_groups[0]["nesterov"]) == (0.9, False)
    with pytest.raises(ConfigError, match=r"retrain.momentum must be >= 0.0 and < 1.0, got 1.0"):
        load_config(None, ["retrain.momentum=1.0"])
    with pytest.raises(ConfigError, match="retrain.device must be one of auto, cpu, cuda, got 'tpu'"):
        load_config(None, ["retrain.device=tpu"])


def test_the_schedule_is_the_supernets_cosine_with_warmup():
    setup = _setup()
    steps, total = 7, 7 * setup.epochs
    for s in range(total):  # the cosine over steps retraining had before it shared lr_at
        assert lr_at(setup, s / steps) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * s / total)))
    warm = _setup(warmup_epochs=1.0, lr_schedule="constant")
    assert lr_at(warm, 0.5) == pytest.approx(0.05) and lr_at(warm, 3.0) == 0.1


def test_retrain_reports_what_the_shared_evaluation_loop_measures():
    reports = []
    setup = _setup(epochs=1, lr_schedule="constant", momentum=0.0, device="cpu")
    train_fixed(setup, 0, report=lambda metrics, state: reports.append((metrics, state)))
    (metrics, state), = reports
    model = build_supernet()
    from raynas.nas.fixed import apply_fixed_architecture

    apply_fixed_architecture(model, ARCH)
    model.load_state_dict(state["model"])
    val = load_data()["val"].tensors
    again = evaluate_loop(model, [val], criterion=nn.functional.cross_entropy)
    assert metrics["val_accuracy"] == pytest.approx(again["accuracy"])
    assert metrics["val_loss"] == pytest.approx(again["loss"], rel=1e-5)
    assert "momentum_buffer" not in str(state["optimizer"]["state"])  # momentum 0: SGD keeps no buffer
