"""What a replica reports to the driver: typed, frozen records, and the meter that fills them.

- :class:`ReplicaInfo`: after setup (pid, device, steps per epoch, candidates, how it syncs);
- :class:`StepReport`: after each ``run(n_steps)`` (loss, accuracy, path counts, trace ...);
- :class:`ReplicaState`: what a checkpoint needs from it.

They cross from a Ray actor to the driver by pickling. ``record["field"]`` still reads a field
(the form these reports had as dicts), for code written against that form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ReplicaInfo", "StepReport", "ReplicaState", "ReportMeter", "parameter_digest"]


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in ``named_parameters`` order (bit-exact comparison)."""
    h = hashlib.sha256()
    for _name, p in model.named_parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _ByKey:
    """``record["field"]``: the dict form of the reports before they were typed."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value, or ``default`` if there is no such field."""
        return getattr(self, key, default)


@dataclass(frozen=True)
class ReplicaInfo(_ByKey):
    """A replica after :meth:`~raynas.train.replica.SupernetReplica.setup`.

    Attributes:
        pid: its process id.
        device: its training device (``"cpu"``, ``"cuda:0"``).
        steps_per_epoch: steps it takes per epoch.
        epoch: the epoch it starts in (after a checkpoint: the checkpoint's).
        step: the global step it starts at.
        candidates: per choice key, the candidates' names.
        allreduce: how gradients are averaged (``none``, ``gloo``, ``nccl``, ``shm``).
    """

    pid: int
    device: str
    steps_per_epoch: int
    epoch: int
    step: int
    candidates: dict[str, list[str]]
    allreduce: str


@dataclass(frozen=True)
class StepReport(_ByKey):
    """A replica's report on the steps of one ``run(n_steps)`` call.

    Attributes:
        rank: the replica's rank.
        epoch: the epoch the steps belong to.
        pos: steps taken in the epoch so far.
        step: the global step after them.
        steps: steps in this report.
        samples: training examples seen.
        loss: mean loss per step.
        accuracy: fraction of correct predictions.
        lr: the learning rate of the last step.
        time_s: wall time of the call.
        counts: per key, how often each candidate was on the path since the last report.
        fallbacks: SPOS bins the mutator could not hit so far.
        trace: with tracing, one ``{"step", "digest", "path"}`` per step (with a learnable
            mutator also ``"arch_digest"``, the digest of its parameters).
        arch: the mean of the architecture steps' scalars (empty without a learnable mutator).
        metrics: the means over the examples of ``supernet.metrics``' values (empty without it).
        data_wait_s: seconds the steps waited for their batches.
    """

    rank: int
    epoch: int
    pos: int
    step: int
    steps: int
    samples: int
    loss: float
    accuracy: float
    lr: float
    time_s: float
    counts: dict[str, list[int]]
    fallbacks: int = 0
    trace: list[dict[str, Any]] = field(default_factory=list)
    arch: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_wait_s: float = 0.0


@dataclass(frozen=True)
class ReplicaState(_ByKey):
    """What a checkpoint needs from a replica (CPU tensors).

    Attributes:
        rank_state: its mutator and RNG states (one entry of a checkpoint's ``rank_states``).
        path: the path in force (``mutator.status()``).
        architecture: a learnable mutator's exported architecture (else ``None``).
        model: the model's state dict (full states only).
        optimizer: the optimizer's state dict (full states only).
        scaler: the fp16 grad scaler's state dict (full states under ``fp16`` only).
        epoch: completed epochs (full states only).
        step: the global step (full states only).
    """

    rank_state: dict[str, Any]
    path: dict[str, Any]
    architecture: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    epoch: int | None = None
    step: int | None = None


class ReportMeter:
    """What a replica did since its last report: path counts, loss, accuracy, architecture-step
    scalars and the trace.

    Args:
        lengths: per choice key, its number of candidates.
        device: where the loss and accuracy sums stay until the report (no sync per step).
    """

    def __init__(self, lengths: Mapping[str, int], device: torch.device):
        self.lengths = dict(lengths)
        self.device = device
        self.counts = {k: np.zeros(n, dtype=np.int64) for k, n in self.lengths.items()}
        self.start()

    def start(self) -> None:
        """Begin a report (the path counts run on from the last report)."""
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.samples = 0
        self.steps = 0
        self.arch_sums: dict[str, float] = {}
        self.arch_steps = 0
        self.metric_sums: dict[str, float] = {}
        self.trace: list[dict[str, Any]] = []

    def count_path(self, chosen: Mapping[str, Any]) -> None:
        """Count the candidates on a path (``{key: chosen indices}``, ``Mutator.chosen_indices``)."""
        for key, indices in chosen.items():
            self.counts[key][list(indices)] += 1

    def add_step(self, loss: torch.Tensor, correct: torch.Tensor, samples: int, arch: Mapping[str, float]) -> None:
        """One step's loss, correct predictions, examples and architecture-step scalars."""
        if arch:
            self.arch_steps += 1
            for k, v in arch.items():
                self.arch_sums[k] = self.arch_sums.get(k, 0.0) + v
        self.loss_sum += loss.float()
        self.correct += correct
        self.samples += samples
        self.steps += 1

    def add_metrics(self, values: Mapping[str, float], samples: int) -> None:
        """One step's metrics (batch means), weighted by its examples."""
        for k, v in values.items():
            self.metric_sums[k] = self.metric_sums.get(k, 0.0) + v * samples

    def report(
        self,
        *,
        rank: int,
        epoch: int,
        pos: int,
        step: int,
        lr: float,
        time_s: float,
        fallbacks: int,
        data_wait_s: float = 0.0,
    ) -> StepReport:
        """The report since :meth:`start`; the path counts start again from zero."""
        counts = {k: v.tolist() for k, v in self.counts.items()}
        self.counts = {k: np.zeros(n, dtype=np.int64) for k, n in self.lengths.items()}
        return StepReport(
            rank=rank,
            epoch=epoch,
            pos=pos,
            step=step,
            steps=self.steps,
            samples=self.samples,
            loss=float(self.loss_sum) / max(self.steps, 1),
            accuracy=float(self.correct) / max(self.samples, 1),
            lr=lr,
            time_s=time_s,
            counts=counts,
            fallbacks=fallbacks,
            trace=self.trace,
            arch={k: v / self.arch_steps for k, v in self.arch_sums.items()},
            metrics={k: v / max(self.samples, 1) for k, v in self.metric_sums.items()},
            data_wait_s=data_wait_s,
        )
