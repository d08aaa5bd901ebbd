"""A model plug-in for the resume tests (``model.factory=tests.experiment.gated:build``): the
mnist1d supernet, holding the run still at a chosen point of progress until a gate file appears,
so that a test kills the driver exactly there, however fast the machine is.

- ``search_after=K``: each process holds the search's (K+1)-th architecture before scoring it
  (weight sharing builds one model per architecture, on the meta device), until ``search_gate``
  exists. Every architecture scored appends a line to ``<search_gate>.scored``.
- ``retrain_after=E``: a retrain trial holds as its epoch E+1 begins (its first training step
  after its E-th validation), until ``retrain_gate`` exists. Every validation a retrain trial
  starts appends its trial id to ``<retrain_gate>.validations``.

A holding process writes ``<gate>.holding-<pid>`` first.
"""

from __future__ import annotations

import os
import time

import torch

from raynas.zoo.mnist1d import Mnist1dSupernet

_SCORED = 0  # architectures this process began to score


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def _hold(gate: str) -> None:
    if os.path.exists(gate):
        return
    _append(f"{gate}.holding-{os.getpid()}", "")
    while not os.path.exists(gate):
        time.sleep(0.05)


def _retrain_trial_id() -> str | None:
    try:
        from ray import tune

        context = tune.get_context()
        return context.get_trial_id() if "_retrain_trial" in (context.get_trial_name() or "") else None
    except Exception:  # noqa: BLE001 - outside a Tune trial
        return None


class Gated(Mnist1dSupernet):
    """The mnist1d supernet; in a retrain trial it counts validations and may hold."""

    def __init__(self, retrain_gate: str | None, retrain_after: int | None):
        super().__init__()
        self.retrain_gate, self.retrain_after = retrain_gate, retrain_after
        self.trial = _retrain_trial_id() if retrain_gate else None
        self.validations = 0
        self.mode: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trial is not None and self.training != self.mode:
            if not self.training and self.mode:  # a validation begins
                self.validations += 1
                _append(f"{self.retrain_gate}.validations", self.trial)
            elif self.training and self.validations == self.retrain_after:  # the next epoch begins
                _hold(self.retrain_gate)
            self.mode = self.training
        return super().forward(x)


def build(
    search_gate: str | None = None,
    search_after: int | None = None,
    retrain_gate: str | None = None,
    retrain_after: int | None = None,
) -> Gated:
    """The gated supernet (see the module docstring)."""
    global _SCORED
    if search_gate and torch.get_default_device().type == "meta":  # the search scores an architecture
        _SCORED += 1
        if search_after is not None and _SCORED > search_after:
            _hold(search_gate)
        _append(f"{search_gate}.scored", str(os.getpid()))
    return Gated(retrain_gate, retrain_after)
