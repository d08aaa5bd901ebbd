"""The built-in ``mnist1d`` benchmark: data and supernet exactly as the README's "Built-in spaces" fixes them.

- Data: ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())``; ``x[:3500]`` train,
  ``x[3500:4000]`` validation, ``x_test`` (1000) test; inputs ``(batch, 1, 40)`` float32.
- Supernet: stem, four ``LayerChoice`` blocks ``op0``..``op3`` over ``conv3, conv5, conv7,
  sepconv5, maxpool3, identity``, skips ``skip1``..``skip3`` (``InputChoice``, ``n_chosen=None``,
  sum) over ``[stem, op0, ..., op{i-2}]``, head = mean over length + ``Linear(16, 10)``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.zoo._cache import cached_arrays

__all__ = ["OPS", "Mnist1dSupernet", "build_supernet", "load_data", "CHANNELS", "N_BLOCKS", "N_CLASSES"]

CHANNELS = 16
N_BLOCKS = 4
N_CLASSES = 10
LENGTH = 40
OPS = ("conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity")


def _conv(k: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(CHANNELS, CHANNELS, k, padding=k // 2, bias=False), nn.BatchNorm1d(CHANNELS), nn.ReLU()
    )


def _candidates() -> OrderedDict:
    return OrderedDict(
        conv3=_conv(3),
        conv5=_conv(5),
        conv7=_conv(7),
        sepconv5=nn.Sequential(
            nn.Conv1d(CHANNELS, CHANNELS, 5, padding=2, groups=CHANNELS, bias=False),
            nn.Conv1d(CHANNELS, CHANNELS, 1, bias=False),
            nn.BatchNorm1d(CHANNELS),
            nn.ReLU(),
        ),
        maxpool3=nn.MaxPool1d(3, stride=1, padding=1),
        identity=nn.Identity(),
    )


class Mnist1dSupernet(nn.Module):
    """The fixed ``mnist1d`` supernet (6^4 x 2^6 = 82,944 architectures)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(1, CHANNELS, 5, padding=2, bias=False), nn.BatchNorm1d(CHANNELS), nn.ReLU()
        )
        self.ops = nn.ModuleList(LayerChoice(_candidates(), key=f"op{i}") for i in range(N_BLOCKS))
        self.skips = nn.ModuleList(
            InputChoice(
                choose_from=["stem"] + [f"op{j}" for j in range(i - 1)],
                n_chosen=None,
                reduction="sum",
                key=f"skip{i}",
            )
            for i in range(1, N_BLOCKS)
        )
        self.head = nn.Linear(CHANNELS, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.stem(x)]  # outs[0] = stem, outs[j + 1] = block j
        for i, op in enumerate(self.ops):
            y = op(outs[-1])
            if i >= 1:
                skip = self.skips[i - 1](outs[:i])
                if skip is not None:
                    y = y + skip
            outs.append(y)
        return self.head(outs[-1].mean(dim=-1))


def build_supernet() -> Mnist1dSupernet:
    """The ``mnist1d`` supernet (``raynas.zoo.mnist1d:build_supernet``)."""
    return Mnist1dSupernet()


def _generate() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load_data() -> dict[str, TensorDataset]:
    """The ``mnist1d`` splits ``{"train": 3500, "val": 500, "test": 1000}`` as TensorDatasets.

    Generated locally by the ``mnist1d`` package (no download) and cached on disk.
    """
    arrays = cached_arrays("mnist1d-v1", _generate)

    def split(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
        return TensorDataset(xs, torch.from_numpy(np.asarray(y, dtype=np.int64)))

    x, y = arrays["x"], arrays["y"]
    return {
        "train": split(x[:3500], y[:3500]),
        "val": split(x[3500:4000], y[3500:4000]),
        "test": split(arrays["x_test"], arrays["y_test"]),
    }
