"""The rows of ``results/retrain.parquet``: their columns, one row per trial, the per-epoch history."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from raynas.retrain.trial import RetrainSetup

__all__ = ["RETRAIN_COLUMNS", "HISTORY_KEYS", "result_row", "tune_history"]


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

HISTORY_KEYS = ("epoch", "train_loss", "val_accuracy", "val_loss")


def result_row(
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


def tune_history(result: Any) -> list[dict]:
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
