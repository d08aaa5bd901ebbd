"""Retraining in this process (``--local``): one architecture after another, resumable, with
:class:`AshaRule` (Tune's ASHA rule) to stop weak ones early."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from raynas._io import write_json_atomic, write_torch_atomic
from raynas.retrain.rows import result_row
from raynas.retrain.trial import RetrainSetup, train_fixed
from raynas.train.checkpoint import read_data

__all__ = ["AshaRule", "run_retrain_local"]


class AshaRule:
    """ASHA's stopping rule for trials trained one after another (``--local``), as Tune's
    ``ASHAScheduler`` applies it in :func:`run_retrain_tune` (one bracket, reduction factor 4,
    time in epochs): rungs sit at ``grace_period * 4**k`` epochs; the first time a trial reaches
    a rung below ``epochs``, it stops when its metric is worse than the 75th percentile (``mode``)
    of the values earlier trials recorded there, and records its own.

    Args:
        epochs: the epochs of a whole trial (Tune's ``max_t``).
        grace_period: epochs before a trial may stop.
        mode: ``max`` or ``min``.
        recorded: the values recorded so far, ``{milestone: {trial: value}}`` (as :attr:`recorded`).
    """

    def __init__(self, *, epochs: int, grace_period: int, mode: str, recorded: Mapping | None = None):
        grace = min(grace_period, epochs)
        self.epochs = epochs
        self.sign = 1.0 if mode == "max" else -1.0
        rungs = int(np.log(epochs / grace) / np.log(4) + 1)
        self.recorded: dict[int, dict[str, float]] = {grace * 4**k: {} for k in range(rungs)}
        for milestone, values in (recorded or {}).items():
            self.recorded[int(milestone)] = {str(t): float(v) for t, v in values.items()}

    def stop(self, trial: str, epoch: int, value: float) -> bool:
        """Whether ``trial`` stops after ``epoch`` with metric ``value``."""
        if epoch >= self.epochs:
            return False  # done anyway
        for milestone in sorted(self.recorded, reverse=True):
            values = self.recorded[milestone]
            if epoch < milestone or trial in values:
                continue
            stop = bool(values) and self.sign * value < np.nanpercentile(list(values.values()), 75)
            values[trial] = self.sign * value
            return stop
        return False


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


class _Stopped(Exception):
    pass


# one loop over the architectures with its resume, ASHA and logging steps in order (~45 lines of code)
def run_retrain_local(
    *,
    setup: RetrainSetup,
    work_dir: str | os.PathLike,
    flops: Sequence[Any],
    log: Callable[[str], None] = lambda _msg: None,
    metric: str = "val_accuracy",
    mode: str = "max",
    scheduler: str = "none",
    grace_period: int = 5,
    on_epoch: Callable[[int, dict], None] = lambda _rank, _metrics: None,
    on_trial_end: Callable[[int, dict], None] = lambda _rank, _row: None,
) -> list[dict]:
    """Retrain every architecture in this process, one after another, resumable from ``work_dir``;
    ``scheduler="asha"`` stops weak ones early by :class:`AshaRule` on ``metric``. ``on_epoch``
    sees ``(rank, metrics)`` after each epoch, ``on_trial_end`` ``(rank, row)`` after each
    architecture (also those an interrupted run finished)."""
    rows = []
    asha_path = os.path.join(work_dir, "asha.json")
    asha = None
    if scheduler == "asha":
        recorded = None
        if os.path.isfile(asha_path):
            with open(asha_path) as f:
                recorded = json.load(f)
        asha = AshaRule(epochs=setup.epochs, grace_period=grace_period, mode=mode, recorded=recorded)
    for rank in range(len(setup.archs)):
        ckpt_path = os.path.join(work_dir, f"arch_{rank:03d}.pt")
        done_path = os.path.join(work_dir, f"arch_{rank:03d}.json")
        if os.path.isfile(done_path):
            with open(done_path) as f:
                rows.append(json.load(f))
            on_trial_end(rank, rows[-1])
            continue
        state = read_data(ckpt_path, what="retrain checkpoint") if os.path.isfile(ckpt_path) else None
        last: dict = {}

        def report(metrics: dict, ckpt: dict, _path: str = ckpt_path, _last: dict = last, _rank: int = rank) -> None:
            _last.clear()
            _last.update(metrics, history=ckpt["history"])
            write_torch_atomic(_path, ckpt)
            on_epoch(_rank, metrics)
            if asha is not None:
                stop = asha.stop(str(_rank), int(metrics["epoch"]), float(metrics[metric]))
                write_json_atomic(asha_path, asha.recorded)
                if stop:
                    raise _Stopped

        status = "ok"
        try:
            train_fixed(setup, rank, report=report, state=state)
        except _Stopped:
            status = "stopped"
        row = result_row(f"local_retrain_{rank:03d}", rank, setup, last, status, flops[rank], last.get("history", ()))
        write_json_atomic(done_path, row)
        rows.append(row)
        on_trial_end(rank, row)
        if status == "stopped":
            log(f"retrain {rank + 1}/{len(setup.archs)}: stopped by ASHA after epoch {row['epochs']}")
        else:
            test = f"test_{metric[4:]}" if metric.startswith("val_") and metric != "val_loss" else "test_accuracy"
            log(f"retrain {rank + 1}/{len(setup.archs)}: {metric} {_fmt(row.get(metric))} {test} {_fmt(row.get(test))}")
    return rows
