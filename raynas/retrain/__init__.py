"""Phase 4: retrain the best architectures from scratch, as Ray Tune trials or in-process.

Every trial trains one fixed architecture (pruned model, fresh weights), reports validation
metrics each epoch with a checkpoint, and measures test accuracy after its last epoch. Tune
retries a failed trial from its last checkpoint (``FailureConfig``); ASHA may stop weak ones early.

Modules: :mod:`~raynas.retrain.trial` (one trial: setup and training), :mod:`~raynas.retrain.tune`
(as Tune trials), :mod:`~raynas.retrain.local` (in this process), :mod:`~raynas.retrain.rows` (the
result rows).
"""

from __future__ import annotations

from raynas.retrain.local import AshaRule, run_retrain_local
from raynas.retrain.rows import HISTORY_KEYS, RETRAIN_COLUMNS
from raynas.retrain.trial import RetrainSetup, train_fixed
from raynas.retrain.tune import run_retrain_tune

__all__ = [
    "RETRAIN_COLUMNS",
    "HISTORY_KEYS",
    "AshaRule",
    "RetrainSetup",
    "train_fixed",
    "run_retrain_tune",
    "run_retrain_local",
]
