"""The one way raynas starts or continues a Ray Tune experiment (search, retrain, classic NAS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["run_or_restore"]


def run_or_restore(
    trainable: Any,
    *,
    tune_config: Any,
    run_config: Any,
    param_space: Mapping[str, Any] | None = None,
    restore: str | None = None,
) -> Any:
    """Continue the Tune experiment at ``restore`` when Tune can, else start a new one; then run it.

    A restored experiment keeps its stored searcher, scheduler and configs (``tune_config``,
    ``run_config`` and ``param_space`` are then unused) and re-runs its unfinished and errored
    trials (``Tuner.restore(..., resume_unfinished=True, resume_errored=True)``).

    Args:
        trainable: the (parameterised, resourced) trainable.
        tune_config: a ``tune.TuneConfig`` for a new experiment.
        run_config: a ``tune.RunConfig`` for a new experiment.
        param_space: the ``param_space`` of a new experiment.
        restore: the experiment path to continue, or ``None`` for a new experiment.

    Returns:
        The ``ResultGrid`` of ``Tuner.fit()``.
    """
    from ray import tune

    if restore is not None and tune.Tuner.can_restore(restore):
        tuner = tune.Tuner.restore(restore, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=dict(param_space) if param_space is not None else None,
            tune_config=tune_config,
            run_config=run_config,
        )
    return tuner.fit()
