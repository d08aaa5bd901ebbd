"""Retraining as a Ray Tune experiment: one trial per architecture, retried from its checkpoint, ASHA optional."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from raynas._tune import keep_last_checkpoints, run_or_restore
from raynas.retrain.rows import result_row, tune_history
from raynas.retrain.trial import RetrainSetup, train_fixed
from raynas.train.checkpoint import read_data
from raynas.train.placement import require, trial_request

__all__ = ["run_retrain_tune"]


def _retrain_trial(config: dict, *, setup: RetrainSetup) -> None:
    from ray import tune

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = read_data(os.path.join(d, "state.pt"), what="retrain checkpoint")  # data only, never code

    def report(metrics: dict, ckpt: dict) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save(ckpt, os.path.join(d, "state.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    train_fixed(setup, int(config["rank"]), report=report, state=state)


def run_retrain_tune(
    *,
    setup: RetrainSetup,
    storage: str,
    name: str,
    metric: str,
    mode: str,
    scheduler: str,
    grace_period: int,
    resources: Mapping[str, float],
    max_failures: int,
    flops: Sequence[Any],
    resume: bool,
    callbacks: Sequence[Any] = (),
) -> list[dict]:
    """Run (or resume) the retraining as a Tune experiment; one row per architecture (``callbacks``:
    more Tune callbacks, e.g. progress).

    Every epoch's checkpoint is kept while it runs, and all but each trial's last are deleted
    once it is done: with ``CheckpointConfig(num_to_keep=k)`` Tune forces a snapshot of the whole
    experiment each time a trial has checkpointed ``k`` times (every second epoch for ``k=2``),
    and warns that this is a bottleneck.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    require(trial_request("retrain", resources))  # said within seconds, not waited on in silence
    trainable = tune.with_resources(tune.with_parameters(_retrain_trial, setup=setup), dict(resources))
    path = os.path.join(storage, name)
    asha = (
        ASHAScheduler(time_attr="epoch", max_t=setup.epochs, grace_period=min(grace_period, setup.epochs))
        if scheduler == "asha"
        else None
    )
    grid = run_or_restore(
        trainable,
        param_space={"rank": tune.grid_search(list(range(len(setup.archs))))},
        tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=asha),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=list(callbacks),
        ),
        restore=path if resume else None,
    )
    keep_last_checkpoints(path)
    rows = []
    for result in grid:
        rank = int(result.config["rank"])
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or os.path.basename(result.path or "")
        status = "error" if result.error else ("stopped" if metrics.get("epoch", 0) < setup.epochs else "ok")
        rows.append(result_row(trial_id, rank, setup, metrics, status, flops[rank], tune_history(result)))
    rows.sort(key=lambda r: r["rank"])
    return rows
