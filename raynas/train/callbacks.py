"""Driver-side callbacks of supernet training (no-op defaults; override what you need).

Callbacks run in the calling process in both modes, so they may print, write files or stop the
run by raising. The training step itself (path sampling, LR schedule, gradient sync) runs inside
the replicas; what callbacks see are the replicas' reports:

- ``on_progress`` after every ``log_every`` steps (both modes, same granularity);
- ``on_epoch_end`` with the epoch's aggregated metrics;
- ``on_checkpoint`` after a checkpoint file is written;
- ``on_failure`` when replicas died and the run restarts from the last checkpoint.

Built-ins: :class:`ArchitectureCheckpoint` (the paths in force and how often each candidate was
sampled, per epoch, as JSON), :class:`MetricsHistory` (``supernet_metrics.json``), and in
:mod:`raynas.train.logging` the TensorBoard logger and the terminal progress line. The model
checkpoint and the LR schedule are part of the trainer itself (resume depends on them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raynas.train.config import SupernetConfig

__all__ = ["Callback", "RunInfo", "Progress", "EpochMetrics", "ArchitectureCheckpoint", "MetricsHistory"]


@dataclass
class RunInfo:
    """What a callback may know about the run.

    Attributes:
        config: the settings.
        out_dir: the run directory.
        local: ``True`` in local mode (no Ray).
        attempt: 0 for the first try, then one more per restart after a failure.
        steps_per_epoch: steps each replica takes per epoch.
        replicas: the Ray actor handles of the current attempt (empty in local mode).
        pids: the replicas' process ids (the caller's pid in local mode).
        candidates: ``{key: candidate names}`` of the model's choices.
        allreduce: how gradients are averaged: ``"shm"`` (shared memory on each node),
            ``"gloo"`` or ``"nccl"`` (the process group), ``"none"`` (one replica).
    """

    config: SupernetConfig
    out_dir: Path
    local: bool
    attempt: int = 0
    steps_per_epoch: int = 0
    replicas: list[Any] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    candidates: dict[str, list[str]] = field(default_factory=dict)
    allreduce: str = "none"


@dataclass(frozen=True)
class Progress:
    """A progress report: after ``step`` global steps (``pos`` of ``steps_per_epoch`` in ``epoch``).

    ``loss`` / ``accuracy`` are the training values over the last report window (all replicas);
    ``samples_per_s`` is measured at the driver between reports.
    """

    epoch: int
    pos: int
    steps_per_epoch: int
    step: int
    loss: float
    accuracy: float
    lr: float
    samples_per_s: float


@dataclass(frozen=True)
class EpochMetrics:
    """One finished epoch (0-based ``epoch``), aggregated over replicas and steps."""

    epoch: int
    step: int
    loss: float
    accuracy: float
    lr: float
    samples_per_s: float
    time_s: float
    counts: dict[str, list[int]]
    fallbacks: int
    paths: list[dict[str, list[float]]] = field(default_factory=list)
    #: mean scalars of the epoch's architecture steps (``darts``/``enas``/``proxylessnas``; empty otherwise).
    arch: dict[str, float] = field(default_factory=dict)
    #: the learnable mutator's exported architecture at the epoch's checkpoint (else ``None``).
    architecture: dict[str, Any] | None = None
    #: the means over the examples of ``supernet.metrics``' values (empty without it).
    metrics: dict[str, float] = field(default_factory=dict)
    #: seconds of the epoch the slowest replica's steps waited for their batches.
    data_wait_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "lr": self.lr,
            "samples_per_s": self.samples_per_s,
            "time_s": self.time_s,
            "counts": self.counts,
            "fallbacks": self.fallbacks,
            "data_wait_s": self.data_wait_s,
            **({"arch": self.arch} if self.arch else {}),
            **({"metrics": self.metrics} if self.metrics else {}),
        }


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, run: RunInfo) -> None:
        """Replicas are set up (called again after each restart)."""

    def on_progress(self, run: RunInfo, progress: Progress) -> None:
        """Every ``log_every`` steps."""

    def on_epoch_end(self, run: RunInfo, metrics: EpochMetrics) -> None:
        """An epoch finished (after its checkpoint, if one was written)."""

    def on_checkpoint(self, run: RunInfo, path: Path, epoch: int) -> None:
        """A checkpoint for ``epoch`` completed epochs was written to ``path``."""

    def on_failure(self, run: RunInfo, error: BaseException, attempt: int) -> None:
        """Replicas failed; the run restarts from the last checkpoint (``attempt`` counts restarts)."""

    def on_train_end(self, run: RunInfo, result: Any) -> None:
        """Training finished; ``result`` is the :class:`~raynas.train.trainer.SupernetResult`."""

    def close(self) -> None:
        """Release resources (also called when the run fails)."""


class ArchitectureCheckpoint(Callback):
    """Write ``<out_dir>/architectures/epoch-NNNN.json`` each epoch: the replicas' current paths
    and how often each candidate was sampled in the epoch (NNI's ``ArchitectureCheckpoint``);
    with a learnable mutator (``darts``, ``enas``, ``proxylessnas``) also ``"architecture"``: its ``export()``
    at that epoch's checkpoint."""

    def on_epoch_end(self, run: RunInfo, metrics: EpochMetrics) -> None:
        from raynas._io import write_json_atomic

        data = {"epoch": metrics.epoch + 1, "paths": metrics.paths, "counts": metrics.counts}
        if metrics.architecture is not None:
            data["architecture"] = metrics.architecture
        write_json_atomic(run.out_dir / "architectures" / f"epoch-{metrics.epoch + 1:04d}.json", data)


class MetricsHistory(Callback):
    """Keep every epoch's metrics in ``<out_dir>/supernet_metrics.json`` (rewritten atomically)."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_train_start(self, run: RunInfo) -> None:
        import json

        path = run.out_dir / "supernet_metrics.json"
        if path.is_file():
            try:
                self.history = list(json.loads(path.read_text()))
            except (ValueError, OSError):
                self.history = []

    def on_epoch_end(self, run: RunInfo, metrics: EpochMetrics) -> None:
        from raynas._io import write_json_atomic

        self.history = [h for h in self.history if h.get("epoch", -1) < metrics.epoch]
        self.history.append(metrics.to_dict())
        write_json_atomic(Path(os.fspath(run.out_dir)) / "supernet_metrics.json", self.history)
