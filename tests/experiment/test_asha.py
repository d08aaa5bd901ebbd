"""``retrain.scheduler: asha``: a clearly worse architecture is stopped early, on Ray (Tune's
``ASHAScheduler``) and in ``--local`` (the same rule, :class:`raynas.retrain.AshaRule`)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raynas.retrain import AshaRule, RetrainSetup, run_retrain_local, run_retrain_tune
from raynas.zoo.mnist1d import build_supernet, load_data
from tests.experiment.cli_helpers import run_cli, sets

#: after one epoch ~0.49 validation accuracy, against ~0.13 for WEAK (a linear model on the stem)
NO_SKIPS = {"skip1": [], "skip2": [], "skip3": []}
STRONG = {"op0": "conv7", "op1": "conv7", "op2": "conv7", "op3": "conv7", **NO_SKIPS}
WEAK = {"op0": "identity", "op1": "identity", "op2": "identity", "op3": "identity", **NO_SKIPS}
EPOCHS = 3


def _setup(archs: list[dict]) -> RetrainSetup:
    return RetrainSetup(
        model_factory=build_supernet,
        data_factory=load_data,
        archs=archs,
        search_scores=[None] * len(archs),
        epochs=EPOCHS,
        optimizer="adam",
        lr=3e-3,
        weight_decay=0.0,
        batch_size=128,
        seed=0,
    )


def _outcome(rows: list[dict]) -> list[tuple[int, str, int]]:
    return [(r["rank"], r["status"], r["epochs"]) for r in sorted(rows, key=lambda r: r["rank"])]


#: the strong architecture trains first and finishes; the weak one is stopped at the first rung
EXPECTED = [(0, "ok", EPOCHS), (1, "stopped", 1)]


def _tune_decisions(epochs: int, grace: int, mode: str, curves: list[list[float]]) -> list[int]:
    """The epochs each trial runs under Tune's own ``ASHAScheduler``, trials one after another."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    scheduler = ASHAScheduler(time_attr="epoch", metric="m", mode=mode, max_t=epochs, grace_period=grace)
    ran = []
    for i, curve in enumerate(curves):
        trial = Trial("t", trial_id=f"t{i}", stub=True)
        scheduler.on_trial_add(None, trial)
        for epoch, value in enumerate(curve, start=1):
            result = {"epoch": epoch, "m": value}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP or epoch == epochs:
                scheduler.on_trial_complete(None, trial, result)
                break
        ran.append(epoch)
    return ran


def _local_decisions(epochs: int, grace: int, mode: str, curves: list[list[float]]) -> list[int]:
    rule = AshaRule(epochs=epochs, grace_period=grace, mode=mode)
    ran = []
    for i, curve in enumerate(curves):
        for epoch, value in enumerate(curve, start=1):
            if rule.stop(str(i), epoch, value):
                break
        ran.append(epoch)
    return ran


def test_the_local_rule_decides_as_tunes_asha_scheduler():
    rng = np.random.default_rng(0)
    stopped = 0
    for _ in range(300):
        epochs = int(rng.integers(1, 40))
        grace = int(rng.integers(1, epochs + 1))
        mode = str(rng.choice(["max", "min"]))
        curves = np.round(rng.random((int(rng.integers(1, 8)), epochs)), 1).tolist()  # rounded: ties too
        ran = _local_decisions(epochs, grace, mode, curves)
        assert ran == _tune_decisions(epochs, grace, mode, curves), (epochs, grace, mode, curves)
        stopped += sum(r < epochs for r in ran)
    assert stopped > 100  # the cases do stop trials early


def test_asha_stops_the_clearly_worse_trial_on_ray(ray_local, tmp_path):
    """Two CPUs per trial on the 2-CPU Ray: the trials run one after another, best first."""
    rows = run_retrain_tune(
        setup=_setup([STRONG, WEAK]),
        storage=str(tmp_path),
        name="asha",
        metric="val_accuracy",
        mode="max",
        scheduler="asha",
        grace_period=1,
        resources={"cpu": 2},
        max_failures=0,
        flops=[0, 0],
        resume=False,
    )
    assert _outcome(rows) == EXPECTED
    assert rows[1]["test_accuracy"] is None and rows[0]["test_accuracy"] is not None


@pytest.mark.slow
def test_local_retrain_applies_the_same_rule(tmp_path):
    """``raynas retrain --local`` with ``retrain.scheduler: asha`` in the experiment's config."""
    extra = ["retrain.scheduler=asha", "retrain.grace_period=1", f"retrain.epochs={EPOCHS}"]
    created = run_cli("search", "--local", "--until", "space", *sets(tmp_path, "asha", extra))
    assert created.returncode == 0, created.stderr[-3000:]
    archs = tmp_path / "archs.json"
    archs.write_text(json.dumps([STRONG, WEAK]))
    result = run_cli("retrain", str(tmp_path / "asha"), "--local", "--archs", str(archs))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(tmp_path / "asha" / "results" / "retrain-archs.parquet").to_pylist()
    assert _outcome(rows) == EXPECTED
    assert "stopped by ASHA after epoch 1" in result.stderr + result.stdout


def test_local_asha_keeps_its_rungs_across_a_restart(tmp_path):
    """A resumed local retrain still compares with the trials trained before the interruption:
    here the process ended after the strong architecture; the restart trains the weak one."""
    run_retrain_local(setup=_setup([STRONG]), work_dir=tmp_path, flops=[0], scheduler="asha", grace_period=1)
    rows = run_retrain_local(
        setup=_setup([STRONG, WEAK]), work_dir=tmp_path, flops=[0, 0], scheduler="asha", grace_period=1
    )
    assert _outcome(rows) == EXPECTED
