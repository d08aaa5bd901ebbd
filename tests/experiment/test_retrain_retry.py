"""A retrain trial that fails mid-training is retried by Tune from its last checkpoint."""

from __future__ import annotations

import json
import textwrap

import pyarrow.parquet as pq
import pytest

from tests.experiment.cli_helpers import run_cli, sets

pytestmark = pytest.mark.slow

FLAKY = textwrap.dedent(
    '''
    """An mnist1d supernet whose forward fails once, in a retrain trial, after its first epoch."""
    import os

    from raynas.zoo.mnist1d import Mnist1dSupernet


    class Flaky(Mnist1dSupernet):
        def __init__(self, marker):
            super().__init__()
            self.marker, self.calls, self.was_training = marker, 0, False

        def forward(self, x):
            self.calls += 1
            if self.training and not self.was_training and _in_retrain_trial():
                # an epoch of training starts: say whether before or after the injected failure
                with open(self.marker + ".epochs", "a") as f:
                    f.write("after\\n" if os.path.exists(self.marker) else "before\\n")
            self.was_training = self.training
            if self.calls == 40 and _in_retrain_trial() and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                raise RuntimeError("injected failure")
            return super().forward(x)


    def _in_retrain_trial():
        try:
            from ray import tune

            return "_retrain_trial" in (tune.get_context().get_trial_name() or "")
        except Exception:
            return False


    def build(marker):
        return Flaky(marker)
    '''
)


def test_failed_retrain_trial_resumes_from_its_checkpoint(tmp_path):
    (tmp_path / "flaky.py").write_text(FLAKY)
    marker = tmp_path / "failed-once"
    extra = [
        "model.factory=flaky:build",
        f"model.kwargs.marker={marker}",
        "search.num_samples=2",
        "retrain.top_k=1",
        "retrain.epochs=3",
        "retrain.max_failures=1",
    ]
    result = run_cli("search", *sets(tmp_path / "out", "retry", extra), PYTHONPATH=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists()  # the failure did happen
    root = tmp_path / "out" / "retry"
    rows = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["epochs"] == 3
    # the failure came in epoch 2; the retried trial trained epochs 2 and 3 only (resumed from the
    # checkpoint of epoch 1), not 1, 2 and 3 again (Tune's result.json of the failed attempt may be
    # rewritten by the retry, so the model itself counts the epochs it trained)
    starts = (tmp_path / "failed-once.epochs").read_text().split()
    completed_before = starts.count("before") - 1  # the failing epoch started but did not finish
    assert completed_before >= 1 and starts.count("after") == 3 - completed_before, starts
    results = [json.loads(line) for p in (root / "tune_retrain").glob("*/result.json") for line in p.read_text().splitlines()]
    assert max(r["epoch"] for r in results) == 3
