"""``train_supernet``: the driver of supernet training (local or on Ray), with recovery.

The driver only coordinates: it asks the replicas to run ``log_every`` steps at a time, finishes
epochs, writes a checkpoint every ``checkpoint_every`` epochs (atomically; ``last.pt`` plus the
latest ``epoch-NNNN.pt`` files) and calls the callbacks. When a replica dies it tears the group
down, restarts every replica from the last checkpoint written (or from the start), and goes on;
after ``max_failures`` restarts it gives up with :class:`ReplicaFailure`.

Recovery policy after a lost node: fewer replicas, at once. When the cluster can no longer hold
``replicas`` replicas after a failure, the restart takes as many as fit now (one warning line says
how many, from which checkpoint) and keeps that number to the end; the result equals a run of
that many replicas resumed from that checkpoint (``batch_size`` is per replica, so the global batch
shrinks with them). Waiting for the node would stall the run for as long as a replacement takes
(minutes for a cloud node, never for a dead machine); a run that must keep its replica count is
resumed later with ``resume=True`` on a cluster that holds them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raynas.train.callbacks import ArchitectureCheckpoint, Callback, EpochMetrics, MetricsHistory, Progress, RunInfo
from raynas.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from raynas.train.config import SupernetConfig
from raynas.train.replica import MutatorFactory
from raynas.train.replicas import LocalReplicas, RayReplicas, ReplicaFailure
from raynas.train.reports import ReplicaInfo, ReplicaState, StepReport
from searchers.errors import ConfigTypeError, RaynasError

__all__ = ["SupernetResult", "train_supernet", "CheckpointExistsError"]

_log = logging.getLogger(__name__)


class CheckpointExistsError(RaynasError, ValueError):
    """The run directory already holds a checkpoint and ``resume`` was not asked for."""


@dataclass(frozen=True)
class SupernetResult:
    """What a supernet training run left behind.

    Attributes:
        out_dir: the run directory.
        checkpoint: the final checkpoint (``<out_dir>/checkpoints/last.pt``).
        epochs: completed epochs.
        steps: global steps taken (per replica).
        replicas: number of replicas.
        local: trained in the calling process.
        restarts: restarts after replica failures.
        wall_s: wall time of the call.
        history: per-epoch metrics (also those of a resumed-from run).
        trace: per rank, one ``{"step", "digest", "path"}`` per step (only with ``trace=True``).
        allreduce: how gradients were averaged (see :attr:`RunInfo.allreduce`).
    """

    out_dir: Path
    checkpoint: Path
    epochs: int
    steps: int
    replicas: int
    local: bool
    restarts: int
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    trace: list[list[dict[str, Any]]] = field(default_factory=list)
    allreduce: str = "none"

    def state_dict(self) -> dict[str, Any]:
        """The trained supernet weights (from the final checkpoint)."""
        return load_checkpoint(self.checkpoint)["model"]


def _as_config(config: SupernetConfig | Mapping[str, Any] | None) -> SupernetConfig:
    if config is None:
        return SupernetConfig()
    if isinstance(config, SupernetConfig):
        return config
    if isinstance(config, Mapping):
        return SupernetConfig.from_dict(config)
    raise ConfigTypeError(f"config must be a SupernetConfig or a mapping, got {type(config).__name__}")


def _builtin_callbacks(config: SupernetConfig) -> list[Callback]:
    from raynas.train.logging import ProgressLine, TensorBoardLogger

    out: list[Callback] = [MetricsHistory(), ArchitectureCheckpoint()]
    if config.tensorboard:
        out.append(TensorBoardLogger())
    if config.progress:
        out.append(ProgressLine())
    return out


# Longer than 60 lines: about 40 of them are the docstring of this public entry point.
def train_supernet(
    factory: Callable[[], Any] | str,
    data: Any,
    config: SupernetConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | os.PathLike,
    local: bool = False,
    resume: bool | str | os.PathLike = False,
    callbacks: Iterable[Callback] = (),
    mutator_factory: MutatorFactory | None = None,
    criterion: Callable | None = None,
    metrics: Callable | None = None,
    trace: bool = False,
) -> SupernetResult:
    """Train a weight-sharing supernet under ``mutator.reset()`` sampling.

    Args:
        factory: zero-argument model factory, or ``"package.module:function"``; every replica
            builds its model from it with the same seed (rank 0's weights are broadcast too).
        data: a :class:`~raynas.train.data.DataSpec` (source and loader settings), or its
            source: ``"module:function"`` / a callable returning ``{"train": Dataset, ...}``
            (called in each replica, e.g. ``raynas.zoo.mnist1d.load_data``), or that mapping.
        config: a :class:`SupernetConfig` or a mapping of its fields (default settings if None).
        out_dir: the run directory (checkpoints, TensorBoard files, metrics).
        local: train in the calling process with one replica and no Ray.
        resume: ``True``: continue from ``<out_dir>/checkpoints/last.pt`` if there is one;
            a path: continue from that checkpoint (from either mode); ``False``: start afresh
            (refused when ``out_dir`` already holds a checkpoint).
        callbacks: extra :class:`Callback` objects (after the built-in ones).
        mutator_factory: ``f(model, *, config, rank, example) -> Mutator`` to train under a
            custom mutator (default: ``config.algorithm``).
        criterion: the loss ``f(output, target)`` (default: ``config.loss``, else cross-entropy).
        metrics: ``f(output, target) -> dict`` averaged per epoch (default: ``config.metrics``).
        trace: record every step's parameter digest and path on every replica.

    Returns:
        The :class:`SupernetResult`.

    Raises:
        ConfigError: a bad setting.
        CheckpointExistsError: ``out_dir`` holds a checkpoint and ``resume`` is ``False``.
        ReplicaFailure: replicas kept failing after ``config.max_failures`` restarts.
    """
    config = _as_config(config)
    if not isinstance(local, bool):
        raise ConfigTypeError(f"local must be True or False, got {local!r}")
    out = Path(out_dir)
    start_time = time.perf_counter()
    initial = _resume_checkpoint(out, resume)
    out.mkdir(parents=True, exist_ok=True)

    world = 1 if local else config.replicas
    cbs = _builtin_callbacks(config) + list(callbacks)
    for cb in cbs:
        if not isinstance(cb, Callback):
            raise ConfigTypeError(f"callbacks must be raynas.train.Callback instances, got {type(cb).__name__}")
    run = RunInfo(config=config, out_dir=out, local=local)
    group_cls = LocalReplicas if local else RayReplicas
    state = _RunState(checkpoint=initial, last_written=None, traces=[[] for _ in range(world)])
    try:
        restarts = _run_with_restarts(
            lambda allow_fewer: group_cls(
                factory=factory,
                data=data,
                config=config,
                mutator_factory=mutator_factory,
                trace=trace,
                criterion=criterion,
                metrics=metrics,
                **({} if local else {"allow_fewer": allow_fewer}),
            ),
            run,
            cbs,
            state,
            world=world,
        )
        result = SupernetResult(
            out_dir=out,
            checkpoint=state.last_written,
            epochs=state.epoch,
            steps=state.step,
            replicas=state.world or world,
            local=local,
            restarts=restarts,
            wall_s=time.perf_counter() - start_time,
            history=list(state.history),
            trace=state.traces if trace else [],
            allreduce=run.allreduce,
        )
        for cb in cbs:
            cb.on_train_end(run, result)
        return result
    finally:
        for cb in cbs:
            cb.close()


def _resume_checkpoint(out: Path, resume: bool | str | os.PathLike | None) -> Mapping[str, Any] | None:
    """The checkpoint to continue from (see ``train_supernet``'s ``resume``), or ``None``."""
    if resume is True:
        resume_path = latest_checkpoint(out)
    elif resume is False or resume is None:
        existing = latest_checkpoint(out)
        if existing is not None:
            raise CheckpointExistsError(
                f"out_dir {str(out)!r} already holds a supernet checkpoint ({existing.name}); "
                "pass resume=True to continue it or choose another out_dir"
            )
        resume_path = None
    else:
        resume_path = Path(resume)
    return load_checkpoint(resume_path) if resume_path is not None else None


@dataclass
class _RunState:
    checkpoint: Mapping[str, Any] | None
    last_written: Path | None
    traces: list[list[dict[str, Any]]]
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    world: int = 0  # replicas of the current attempt (fewer than asked after a lost node)


def _run_with_restarts(
    make_group: Callable[[bool], Any], run: RunInfo, cbs: list[Callback], state: _RunState, *, world: int
) -> int:
    """Train to the end, restarting every replica from the last checkpoint written after a
    :class:`ReplicaFailure` (at most ``max_failures`` times); the number of restarts."""
    config = run.config
    restarts = 0
    while True:
        group = make_group(restarts > 0)
        try:
            infos: list[ReplicaInfo] = group.start(state.checkpoint)
            if group.world_size < (state.world or world):
                _log.warning(
                    "supernet: the cluster now holds %d of %d replicas (a node was lost); continuing with %d "
                    "replicas from %s (epoch %s, step %s)",
                    group.world_size, world, group.world_size, state.last_written or "the start",
                    (state.checkpoint or {}).get("epoch", 0), (state.checkpoint or {}).get("step", 0),
                )  # fmt: skip
            state.world = world = group.world_size
            run.attempt = restarts
            run.replicas = group.handles
            run.pids = [info.pid for info in infos]
            run.steps_per_epoch = infos[0].steps_per_epoch
            run.candidates = dict(infos[0].candidates)
            run.allreduce = infos[0].allreduce
            for cb in cbs:
                cb.on_train_start(run)
            _train_epochs(group, run, cbs, state, world=world)
            return restarts
        except ReplicaFailure as exc:
            restarts += 1
            if restarts > config.max_failures:
                raise ReplicaFailure(
                    f"supernet replicas failed {restarts} times (supernet.max_failures={config.max_failures}); "
                    f"last: {exc}"
                ) from exc
            for cb in cbs:
                cb.on_failure(run, exc, restarts)
            if state.last_written is not None:
                state.checkpoint = load_checkpoint(state.last_written)
        finally:
            group.shutdown()


@dataclass
class _EpochSums:
    """The replicas' reports of one epoch, summed."""

    loss: float = 0.0
    correct: float = 0.0
    samples: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    arch: dict[str, float] = field(default_factory=dict)
    arch_reports: int = 0
    fallbacks: int = 0
    lr: float = 0.0
    metric_sums: dict[str, float] = field(default_factory=dict)
    data_wait_s: float = 0.0

    def add(self, reports: list[StepReport], n: int, traces: list[list[dict[str, Any]]]) -> tuple[float, float, int]:
        """Add the replicas' reports on the same ``n`` steps (their traces go to ``traces``).

        Returns:
            ``(loss, accuracy, samples)`` of these reports.
        """
        samples = sum(r.samples for r in reports)
        loss = float(np.mean([r.loss for r in reports]))
        acc = sum(r.accuracy * r.samples for r in reports) / max(samples, 1)
        self.lr = reports[0].lr
        self.loss += loss * n
        self.correct += acc * samples
        self.samples += samples
        self.fallbacks = sum(r.fallbacks for r in reports)
        self.data_wait_s += max(r.data_wait_s for r in reports)
        for r in reports:
            for key, v in r.metrics.items():
                self.metric_sums[key] = self.metric_sums.get(key, 0.0) + v * r.samples
            if r.arch:
                self.arch_reports += 1
                for key, v in r.arch.items():
                    self.arch[key] = self.arch.get(key, 0.0) + v
            for key, c in r.counts.items():
                self.counts[key] = self.counts.get(key, 0) + np.asarray(c, dtype=np.int64)
            if r.trace:
                traces[r.rank].extend(r.trace)
        return loss, acc, samples

    def metrics(self, *, epoch: int, step: int, steps: int, elapsed: float) -> EpochMetrics:
        """The epoch's metrics (``steps``: steps per epoch, ``elapsed``: its wall time)."""
        return EpochMetrics(
            epoch=epoch,
            step=step,
            loss=self.loss / max(steps, 1),
            accuracy=self.correct / max(self.samples, 1),
            lr=self.lr,
            samples_per_s=self.samples / max(elapsed, 1e-9),
            time_s=elapsed,
            counts={k: v.tolist() for k, v in self.counts.items()},
            fallbacks=self.fallbacks,
            arch={k: v / self.arch_reports for k, v in self.arch.items()},
            metrics={k: v / max(self.samples, 1) for k, v in self.metric_sums.items()},
            data_wait_s=self.data_wait_s,
        )


def _train_epochs(group: Any, run: RunInfo, cbs: list[Callback], state: _RunState, *, world: int) -> None:
    cfg = run.config
    ckpt = state.checkpoint
    state.epoch = int(ckpt["epoch"]) if ckpt is not None else 0
    state.step = int(ckpt["step"]) if ckpt is not None else 0
    state.history = [h for h in (ckpt.get("history", []) if ckpt is not None else []) if h["epoch"] < state.epoch]
    totals: dict[str, np.ndarray] = {
        k: np.asarray(v, dtype=np.int64) for k, v in ((ckpt or {}).get("sample_counts") or {}).items()
    }
    spe = run.steps_per_epoch
    if state.epoch >= cfg.total_epochs and state.last_written is None:
        _save(group, run, cbs, state, totals, world=world)  # nothing to train: keep the loaded state
    while state.epoch < cfg.total_epochs:
        epoch = state.epoch
        epoch_start = time.perf_counter()
        pos = 0
        sums = _EpochSums()
        while pos < spe:
            n = min(cfg.log_every, spe - pos)
            tick = time.perf_counter()
            reports: list[StepReport] = group.run(n)
            elapsed = max(time.perf_counter() - tick, 1e-9)
            pos += n
            state.step += n
            loss, acc, samples = sums.add(reports, n, state.traces)
            progress = Progress(
                epoch=epoch,
                pos=pos,
                steps_per_epoch=spe,
                step=state.step,
                loss=loss,
                accuracy=acc,
                lr=sums.lr,
                samples_per_s=samples / elapsed,
            )
            for cb in cbs:
                cb.on_progress(run, progress)
        group.end_epoch()
        state.epoch = epoch + 1
        for key, c in sums.counts.items():
            totals[key] = totals.get(key, 0) + c
        metrics = sums.metrics(epoch=epoch, step=state.step, steps=spe, elapsed=time.perf_counter() - epoch_start)
        state.history.append(metrics.to_dict())
        paths: list[dict[str, list[float]]] = []
        architecture = None
        if state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.total_epochs:
            paths, architecture = _save(group, run, cbs, state, totals, world=world)
        metrics = EpochMetrics(**{**metrics.__dict__, "paths": paths, "architecture": architecture})
        for cb in cbs:
            cb.on_epoch_end(run, metrics)


def _save(
    group: Any, run: RunInfo, cbs: list[Callback], state: _RunState, totals: Mapping[str, Any], *, world: int
) -> tuple[list[dict[str, list[float]]], dict[str, Any] | None]:
    states: list[ReplicaState] = group.state()
    architecture = states[0].architecture
    payload = {
        "model": states[0].model,
        "optimizer": states[0].optimizer,
        "scaler": states[0].scaler,
        "rank_states": [s.rank_state for s in states],
        "epoch": state.epoch,
        "step": state.step,
        "replicas": world,
        "local": run.local,
        "config": run.config.to_dict(),
        "history": list(state.history),
        "sample_counts": {k: np.asarray(v).tolist() for k, v in totals.items()},
        "architecture": architecture,
    }
    path = save_checkpoint(payload, run.out_dir, keep=run.config.keep_checkpoints)
    state.last_written = path
    for cb in cbs:
        cb.on_checkpoint(run, path, state.epoch)
    return [s.path for s in states], architecture
