"""Phase 4: retrain the best architectures from scratch, as Ray Tune trials or in-process.

Every trial trains one fixed architecture (pruned model, fresh weights), reports validation
metrics each epoch with a checkpoint, and measures test accuracy after its last epoch. Tune
retries a failed trial from its last checkpoint (``FailureConfig``); ASHA may stop weak ones early.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from raynas._io import write_json_atomic, write_torch_atomic
from raynas._tune import keep_last_checkpoints, run_or_restore
from raynas.nas.fixed import apply_fixed_architecture
from raynas.train.checkpoint import read_data
from raynas.train.data import as_data_spec
from raynas.train.evaluate import evaluate_loop
from raynas.train.loader import CachedBatches, OrderSampler, ShardSampler
from raynas.train.objective import resolve_loss, resolve_metrics
from raynas.train.placement import require, trial_request
from raynas.train.resolve import check_precision, pick_device
from raynas.train.step import WeightStep

__all__ = ["RETRAIN_COLUMNS", "AshaRule", "RetrainSetup", "train_fixed", "run_retrain_tune", "run_retrain_local"]

RETRAIN_COLUMNS = (
    "trial_id",
    "rank",
    "arch",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "params",
    "flops",
    "epochs",
    "search_val_accuracy",
    "wall_s",
    "status",
    "history",
)

_EVAL_BATCH = 500  # examples per evaluation batch

#: the per-epoch figures a row's ``history`` keeps (a JSON list of ``{key: value}``, one per epoch)
HISTORY_KEYS = ("epoch", "train_loss", "val_accuracy", "val_loss")


class RetrainSetup:
    """What a retrain trial needs (small and picklable); its training settings are read by the
    same :class:`~raynas.train.step.WeightStep` (optimizer, learning-rate schedule, clipping,
    precision) and :func:`~raynas.train.resolve.pick_device` as supernet training's.

    Args:
        model_factory: zero-argument model factory.
        data_factory: a :class:`~raynas.train.data.DataSpec`, or a zero-argument function returning
            the data splits (called in each trial).
        archs: the architectures to retrain, best first (exported form).
        search_scores: their weight-sharing scores (``None`` where unknown).
        epochs: training epochs.
        optimizer: ``adam`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: L2 weight decay.
        batch_size: training batch size.
        seed: base seed (each architecture's is ``(seed, rank)``).
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum.
        lr_schedule: ``cosine`` (to 0 over all epochs, after the warm-up) or ``constant``.
        warmup_epochs: linear warm-up length in epochs.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        loss: ``f(output, target) -> scalar tensor``, a callable or ``"module:name"`` (default
            cross-entropy).
        metrics: ``f(output, target) -> {name: number}``, a callable or ``"module:name"``,
            reported as ``val_<name>`` / ``test_<name>`` (default: the accuracy).
    """

    #: no in-place distillation when retraining (a :class:`~raynas.train.step.TrainSettings` field)
    distill = 0.0

    def __init__(
        self,
        *,
        model_factory: Callable,
        data_factory: Callable,
        archs: Sequence[Mapping[str, Any]],
        search_scores: Sequence[float | None],
        epochs: int,
        optimizer: str,
        lr: float,
        weight_decay: float,
        batch_size: int,
        seed: int,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        grad_clip: float | None = None,
        precision: str = "fp32",
        device: str = "auto",
        loss: Callable | str | None = None,
        metrics: Callable | str | None = None,
    ):
        self.model_factory = model_factory
        self.data_factory = data_factory
        self.archs = [dict(a) for a in archs]
        self.search_scores = list(search_scores)
        self.epochs = epochs
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.momentum = momentum
        self.nesterov = nesterov
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.grad_clip = grad_clip
        self.precision = precision
        self.device = device
        self.loss = loss
        self.metrics = metrics

    @property
    def total_epochs(self) -> int:
        """The epochs the learning-rate schedule spans (``epochs``)."""
        return self.epochs


class _TrialData:
    """A retrain trial's data, built in its process: the training batches (a seeded permutation
    per ``(seed, rank, epoch)``, full batches) and evaluation splits read in order."""

    def __init__(self, setup: RetrainSetup, rank: int, device: torch.device):
        self.spec = as_data_spec(setup.data_factory)
        self.splits = self.spec.splits()
        self.seed = [setup.seed, rank]
        self.device = device
        n = len(self.splits["train"])
        self.sampler = ShardSampler(n, batch_size=min(setup.batch_size, n), seed=self.seed)
        self.train = self.spec.loader(self.splits["train"], self.sampler, device)

    def evaluation(self, split: str) -> CachedBatches:
        """The batches of ``split`` in order (kept after the first pass when they fit)."""
        order = OrderSampler(len(self.splits[split]), batch_size=_EVAL_BATCH, seed=[*self.seed, 0xE7A1])
        return CachedBatches(self.spec.loader(self.splits[split], order, self.device))


def train_fixed(
    setup: RetrainSetup,
    rank: int,
    *,
    report: Callable[[dict, dict], None],
    state: Mapping[str, Any] | None = None,
) -> None:
    """Train architecture ``rank`` of ``setup`` from scratch, calling ``report`` each epoch.

    Args:
        setup: the retrain setup.
        rank: which architecture (0 = the best search score).
        report: ``report(metrics, state)``: ``metrics`` has ``epoch``, ``val_loss``,
            ``val_<metric>`` (default ``val_accuracy``), ``train_loss`` (and ``test_<metric>``
            after the last epoch); ``state`` is the checkpoint to resume from (its ``history`` lists
            every epoch's figures).
        state: a checkpoint a previous call reported, to continue from it.
    """
    device = pick_device(setup.device, key="retrain.device")
    check_precision(device, setup.precision, key="retrain.precision")
    loss_fn = resolve_loss(setup.loss, key="retrain.loss")
    metrics_fn = resolve_metrics(setup.metrics, key="retrain.metrics")
    torch.manual_seed(setup.seed * 1000 + rank)
    model = setup.model_factory()
    apply_fixed_architecture(model, setup.archs[rank])
    model.to(device)
    data = _TrialData(setup, rank, device)
    sampler, train, val, steps = data.sampler, data.train, data.evaluation("val"), data.sampler.steps

    def evaluate(batches: CachedBatches) -> dict[str, float]:
        return evaluate_loop(model, batches, criterion=loss_fn, metrics=metrics_fn, metrics_key="retrain.metrics")

    weights = WeightStep(model, setup, device=device, criterion=loss_fn)
    start_epoch, wall, history = 0, 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        weights.optimizer.load_state_dict(state["optimizer"])
        if weights.scaler is not None and state.get("scaler"):
            weights.scaler.load_state_dict(state["scaler"])
        start_epoch, wall, history = int(state["epoch"]), float(state["wall_s"]), list(state.get("history", []))
    n_params = sum(p.numel() for p in model.parameters())
    for epoch in range(start_epoch, setup.epochs):
        began = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        loss_sum = 0.0
        for s, (x, y) in enumerate(train):
            weights.set_lr(epoch + s / steps)
            weights.zero_grad()
            _out, loss = weights.forward_backward(x, y, 1)
            weights.apply()
            loss_sum += float(loss.detach())
        scores = evaluate(val)
        wall += time.perf_counter() - began
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / steps,
            **{f"val_{k}": v for k, v in scores.items()},
            "params": n_params,
            "rank": rank,
            "wall_s": wall,
        }
        if epoch + 1 == setup.epochs and "test" in data.splits:
            tested = evaluate(data.evaluation("test"))
            metrics.update({f"test_{k}": v for k, v in tested.items() if k != "loss"})
        history.append({k: metrics[k] for k in HISTORY_KEYS if k in metrics})
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": weights.optimizer.state_dict(),
            "scaler": weights.scaler.state_dict() if weights.scaler is not None else None,
            "epoch": epoch + 1,
            "wall_s": wall,
            "history": list(history),
        }
        report(metrics, checkpoint)


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


def _row(
    trial_id: str,
    rank: int,
    setup: RetrainSetup,
    metrics: Mapping[str, Any] | None,
    status: str,
    flops: Any,
    history: Sequence[Mapping[str, Any]] = (),
) -> dict:
    metrics = metrics or {}
    extra = {
        k: v for k, v in metrics.items() if k.startswith(("val_", "test_")) and isinstance(v, (int, float))
    }  # the metrics a custom retrain.metrics returns, as columns of their own
    return {
        **extra,
        "trial_id": trial_id,
        "rank": rank,
        "arch": json.dumps(setup.archs[rank], sort_keys=True),
        "val_accuracy": metrics.get("val_accuracy"),
        "val_loss": metrics.get("val_loss"),
        "test_accuracy": metrics.get("test_accuracy"),
        "params": metrics.get("params"),
        "flops": flops,
        "epochs": metrics.get("epoch"),
        "search_val_accuracy": setup.search_scores[rank],
        "wall_s": metrics.get("wall_s"),
        "status": status,
        "history": json.dumps([{k: h.get(k) for k in HISTORY_KEYS} for h in history]),
    }


def _tune_history(result: Any) -> list[dict]:
    """Every epoch a Tune trial reported, once (a retried trial reports again from its checkpoint)."""
    frame = result.metrics_dataframe
    if frame is None or "epoch" not in frame:
        return []
    by_epoch = {}
    for record in frame.to_dict("records"):
        by_epoch[int(record["epoch"])] = {k: _plain(record.get(k)) for k in HISTORY_KEYS}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _plain(value: Any) -> Any:
    """A JSON-able number (``None`` for a missing / NaN value)."""
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)) and math.isfinite(value):
        return float(value)
    return None


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
        rows.append(_row(trial_id, rank, setup, metrics, status, flops[rank], _tune_history(result)))
    rows.sort(key=lambda r: r["rank"])
    return rows


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
        row = _row(f"local_retrain_{rank:03d}", rank, setup, last, status, flops[rank], last.get("history", ()))
        write_json_atomic(done_path, row)
        rows.append(row)
        on_trial_end(rank, row)
        if status == "stopped":
            log(f"retrain {rank + 1}/{len(setup.archs)}: stopped by ASHA after epoch {row['epochs']}")
        else:
            test = f"test_{metric[4:]}" if metric.startswith("val_") and metric != "val_loss" else "test_accuracy"
            log(f"retrain {rank + 1}/{len(setup.archs)}: {metric} {_fmt(row.get(metric))} {test} {_fmt(row.get(test))}")
    return rows
