"""The one way raynas starts or continues a Ray Tune experiment (search, retrain, classic NAS)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

from searchers.errors import Interrupted

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

    Raises:
        Interrupted: Ctrl-C (SIGINT) stopped the experiment. Tune catches the first one itself,
            saves the experiment's state and returns from ``fit()`` as if it had finished; raynas
            must not take those results for the whole phase. The signal handlers of before
            ``fit()`` are back in place either way (Tune leaves its own installed).
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
    return _fit_noting_sigint(tuner, restore or os.path.join(run_config.storage_path or "", run_config.name or ""))


def _fit_noting_sigint(tuner: Any, path: str) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit()  # Tune installs no handler off the main thread
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if sig}
    try:
        grid = tuner.fit()
    finally:
        caught = signal.getsignal(signal.SIGINT) is saved[signal.SIGINT]  # Tune restores it on a SIGINT only
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
    if caught and not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0")):
        raise Interrupted(f"stopped by Ctrl-C; the Tune experiment's state is saved in {path}")
    return grid


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
