"""Small models shared by the tests of raynas.nas."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from raynas.nas import InputChoice, LayerChoice, MutableScope
from raynas.nas.utils import ScopedFactory


class Scale(nn.Module):
    """Multiply by a constant and count calls (to see which candidates ran)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.factor


class Cell(MutableScope):
    def __init__(self, key: str | None = None):
        super().__init__(key)
        self.op = LayerChoice(OrderedDict(double=Scale(2.0), triple=Scale(3.0), linear=nn.Linear(4, 4)))
        self.inp = InputChoice(choose_from=["stem", "cell0.op"], n_chosen=1)

    def forward(self, stem: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.op(prev) + self.inp([stem, prev])


class TinyNet(nn.Module):
    """Layer choices, input choices (n_chosen None and 1), a scope and a shared key."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.cell0 = Cell()
        self.first = LayerChoice([nn.Linear(4, 4), nn.Tanh()], key="shared")
        self.second = LayerChoice([nn.Linear(4, 4), nn.ReLU()], key="shared")
        self.skip = InputChoice(choose_from=["stem", "shared"], n_chosen=None)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        c = self.cell0(s, s)
        a = self.second(self.first(c))
        skip = self.skip([s, a])
        return self.head(a if skip is None else a + skip)


def tiny_net() -> TinyNet:
    """A TinyNet built as raynas builds models (its own counter): keys Cell1, LayerChoice2, InputChoice3,
    shared, InputChoice4."""
    return ScopedFactory(TinyNet)()
