"""The one way raynas starts or continues a Ray Tune experiment (search, retrain, classic NAS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["keep_last_checkpoints", "run_or_restore"]


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


def keep_last_checkpoints(experiment_path: str) -> None:
    """Delete each trial's checkpoints but its latest (``<trial>/checkpoint_NNNNNN``) in the Tune
    experiment at ``experiment_path`` (a local path or a URI pyarrow understands).

    Run it after ``Tuner.fit()`` returned: while Tune runs, it owns the checkpoints.
    """
    import pyarrow.fs

    if "://" in experiment_path:
        fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    else:
        fs, root = pyarrow.fs.LocalFileSystem(), experiment_path
    directory = pyarrow.fs.FileType.Directory
    for trial in fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True)):
        if trial.type != directory:
            continue
        checkpoints = sorted(
            info.path
            for info in fs.get_file_info(pyarrow.fs.FileSelector(trial.path))
            if info.type == directory and info.base_name.startswith("checkpoint_")
        )
        for old in checkpoints[:-1]:
            fs.delete_dir(old)
