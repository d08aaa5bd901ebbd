"""``raynas._tune.run_or_restore``: Ctrl-C during a Tune experiment is an :class:`Interrupted`, not
a finished phase, and the signal handlers of before are back after ``fit()`` either way."""

from __future__ import annotations

import os
import signal

import pytest
from ray import tune

from raynas._tune import run_or_restore
from searchers.errors import Interrupted


def _trainable(config):
    tune.report({"score": float(config["x"])})


class InterruptAfter(tune.Callback):
    """SIGINT to this process (as Ctrl-C sends it) once ``after`` trials have completed."""

    def __init__(self, after: int) -> None:
        self.after, self.completed = after, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed == self.after:
            os.kill(os.getpid(), signal.SIGINT)


def _run(tmp_path, name: str, callbacks: list) -> object:
    return run_or_restore(
        _trainable,
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0, callbacks=callbacks),
        param_space={"x": tune.grid_search(list(range(6)))},
    )


def test_ctrl_c_is_an_interruption_and_the_handlers_come_back(ray_local, tmp_path):
    mine = signal.getsignal(signal.SIGINT)
    grid = _run(tmp_path, "whole", [])
    assert len(grid) == 6 and grid.num_terminated == 6
    assert signal.getsignal(signal.SIGINT) is mine  # Tune's handler is not left behind

    with pytest.raises(Interrupted, match=f"stopped by Ctrl-C; the Tune experiment's state is saved in {tmp_path}"):
        _run(tmp_path, "stopped", [InterruptAfter(2)])
    assert signal.getsignal(signal.SIGINT) is mine
    assert isinstance(Interrupted("x"), KeyboardInterrupt)
    # what it stopped continues from Tune's saved state
    assert tune.Tuner.can_restore(str(tmp_path / "stopped"))
