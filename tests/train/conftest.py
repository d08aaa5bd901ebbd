"""Fixtures of the supernet-training tests: a small slice of mnist1d and small configs."""

from __future__ import annotations

import pytest
from torch.utils.data import TensorDataset

from raynas.train import SupernetConfig

FACTORY = "raynas.zoo.mnist1d:build_supernet"


def slice_mnist1d(n_train: int = 640, n_val: int = 200) -> dict[str, TensorDataset]:
    """The first ``n_train`` training and ``n_val`` validation samples of mnist1d."""
    from raynas.zoo.mnist1d import load_data

    data = load_data()
    x, y = data["train"].tensors
    xv, yv = data["val"].tensors
    return {"train": TensorDataset(x[:n_train], y[:n_train]), "val": TensorDataset(xv[:n_val], yv[:n_val])}


@pytest.fixture(scope="session")
def small_data() -> dict[str, TensorDataset]:
    """640 training samples: 10 steps per epoch for 2 replicas at batch 32."""
    return slice_mnist1d()


def small_config(**changes) -> SupernetConfig:
    """A quick config: batch 32, 2 replicas, no terminal output, no TensorBoard."""
    base = dict(
        replicas=2,
        epochs=2,
        batch_size=32,
        log_every=5,
        progress=False,
        tensorboard=False,
        dist_timeout_s=30.0,
    )
    base.update(changes)
    return SupernetConfig(**base)
