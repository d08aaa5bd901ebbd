"""The ENAS controller's parts: its settings' checks and the stacked LSTM cell (NNI's ``StackedLSTMCell``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from searchers.errors import ConfigError

__all__ = ["EnasConfigError", "StackedLSTMCell", "check_number", "check_integer", "param_name"]


class EnasConfigError(ConfigError):
    """An ENAS setting breaks its rule (the message names the setting and the value)."""


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    strict_max: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnasConfigError(f"EnasMutator {name} must be a number, got {value!r}")
    low = minimum is not None and (value < minimum or (strict and value == minimum))
    high = maximum is not None and (value > maximum or (strict_max and value == maximum))
    if low or high:
        rules = []
        if minimum is not None:
            rules.append(f"{'>' if strict else '>='} {minimum}")
        if maximum is not None:
            rules.append(f"{'<' if strict_max else '<='} {maximum}")
        raise EnasConfigError(f"EnasMutator {name} must be {' and '.join(rules)}, got {value!r}")
    return float(value)


def check_integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EnasConfigError(f"EnasMutator {name} must be an integer >= 1, got {value!r}")
    return value


def param_name(key: str) -> str:
    """A mutable key as a ParameterDict name (which may not contain dots)."""
    return key.replace(".", "__")


class StackedLSTMCell(nn.Module):
    """``layers`` LSTM cells without bias, each feeding its hidden state to the next."""

    def __init__(self, layers: int, size: int):
        super().__init__()
        self.lstm_modules = nn.ModuleList(nn.LSTMCell(size, size, bias=False) for _ in range(layers))

    def forward(
        self, inputs: torch.Tensor, hidden: tuple[list[torch.Tensor], list[torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        prev_h, prev_c = hidden
        next_h, next_c = [], []
        for i, cell in enumerate(self.lstm_modules):
            h, c = cell(inputs, (prev_h[i], prev_c[i]))
            next_h.append(h)
            next_c.append(c)
            inputs = h
        return next_h, next_c
