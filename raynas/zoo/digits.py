"""``digits``: scikit-learn's bundled 8x8 digits (no download) and a small 2-D supernet space."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raynas.nas.mutables import InputChoice, LayerChoice

__all__ = ["DigitsSupernet", "build_supernet", "load_data"]

CHANNELS = 16


def _conv(k: int) -> nn.Module:
    conv = nn.Conv2d(CHANNELS, CHANNELS, k, padding=k // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(CHANNELS), nn.ReLU())


class DigitsSupernet(nn.Module):
    """Stem, two ``LayerChoice`` blocks (``conv3``, ``conv5``, ``maxpool3``, ``identity``) and a
    skip ``InputChoice`` into the second block; head = global mean + ``Linear(16, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, CHANNELS, 3, padding=1, bias=False), nn.BatchNorm2d(CHANNELS), nn.ReLU())
        self.ops = nn.ModuleList(
            LayerChoice(
                OrderedDict(
                    conv3=_conv(3),
                    conv5=_conv(5),
                    maxpool3=nn.MaxPool2d(3, stride=1, padding=1),
                    identity=nn.Identity(),
                ),
                key=f"op{i}",
            )
            for i in range(2)
        )
        self.skip1 = InputChoice(choose_from=["stem"], n_chosen=None, key="skip1")
        self.head = nn.Linear(CHANNELS, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        y = self.ops[0](s)
        z = self.ops[1](y)
        skip = self.skip1([s])
        if skip is not None:
            z = z + skip
        return self.head(z.mean(dim=(2, 3)))


def build_supernet() -> DigitsSupernet:
    """The ``digits`` supernet (``raynas.zoo.digits:build_supernet``)."""
    return DigitsSupernet()


def load_data(*, seed: int = 0) -> dict[str, TensorDataset]:
    """scikit-learn's 1,797 digits as ``(N, 1, 8, 8)`` in [0, 1], split 1,200 / 297 / 300 by ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    parts = {"train": order[:1200], "val": order[1200:1497], "test": order[1497:]}
    return {k: TensorDataset(torch.from_numpy(x[i]), torch.from_numpy(y[i])) for k, i in parts.items()}
