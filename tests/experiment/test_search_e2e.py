"""`raynas search` end to end through the real CLI: with Ray (Tune experiments) and --local."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from raynas.nas import apply_fixed_architecture, generate_search_space
from raynas.zoo.mnist1d import build_supernet
from tests.experiment.cli_helpers import run_cli, sets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["ray", "local"])
def finished(request, tmp_path_factory):
    storage = tmp_path_factory.mktemp(f"storage-{request.param}")
    extra = ["--local"] if request.param == "local" else []
    result = run_cli("search", *extra, *sets(storage))
    assert result.returncode == 0, result.stderr[-3000:]
    return request.param, storage / "tiny", result


def test_the_whole_directory_is_written(finished):
    mode, root, result = finished
    assert json.loads((root / "search_space.json").read_text()) == generate_search_space(build_supernet())
    assert (root / "config.yaml").is_file()
    assert (root / "supernet" / "checkpoints" / "last.pt").is_file()
    assert any((root / "tensorboard").rglob("events.out.tfevents*"))
    if mode == "ray":
        assert (root / "tune_search").is_dir() and (root / "tune_retrain").is_dir()
    assert f"results: {root}" in result.stdout
    assert not list(root.rglob(".*.tmp-*"))  # no half-written file left


def test_parquet_results_have_one_row_per_trial(finished):
    _mode, root, _result = finished
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(search) == 6 and len({r["trial_id"] for r in search}) == 6
    for row in search:
        assert {"trial_id", "arch", "val_accuracy", "params", "flops", "wall_s"} <= set(row)
        assert 0.0 <= row["val_accuracy"] <= 1.0 and row["params"] > 0 and row["flops"] > 0
        json.loads(row["arch"])
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(retrain) == 2 and len({r["arch"] for r in retrain}) == 2
    for row in retrain:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["epochs"] == 2
        assert {"trial_id", "val_accuracy", "params", "flops", "wall_s"} <= set(row)


def test_best_architecture_applies_to_the_model(finished):
    _mode, root, _result = finished
    best = json.loads((root / "best_architecture.json").read_text())
    mutator = apply_fixed_architecture(build_supernet(), best)
    assert mutator.export() == best


def test_report_and_eval_read_the_directory(finished, tmp_path):
    _mode, root, _result = finished
    report = run_cli("report", str(root), "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = [json.loads(line) for line in report.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["val_accuracy"] >= rows[1]["val_accuracy"]
    archs = [json.loads(r["arch"]) for r in rows] + [{"op0": 0, "op1": 1, "op2": 2, "op3": 5,
                                                      "skip1": [True], "skip2": [], "skip3": [0, 2]}]
    archs_file = tmp_path / "archs.json"
    archs_file.write_text(json.dumps(archs))
    evaluated = run_cli("eval", str(root), "--archs", str(archs_file), "--format", "json")
    assert evaluated.returncode == 0, evaluated.stderr
    out = [json.loads(line) for line in evaluated.stdout.splitlines()]
    assert len(out) == 3
    assert out[2]["arch"]["op3"] == "identity" and out[2]["arch"]["skip3"] == ["stem", "op1"]
    assert all(0.0 <= o["val_accuracy"] <= 1.0 for o in out)


def test_storage_uri_holds_the_experiment_and_resumes_from_it(tmp_path):
    """``experiment.storage`` as a URI pyarrow understands (``file://`` here; ``s3://`` alike)."""
    uri = f"file://{tmp_path}/bucket"
    staging = {"RAYNAS_STAGING_DIR": str(tmp_path / "staging")}
    first = run_cli("search", "--local", "--until", "supernet", *sets(uri), **staging)
    assert first.returncode == 0, first.stderr[-3000:]
    remote = tmp_path / "bucket" / "tiny"
    assert json.loads((remote / "state.json").read_text())["done"].keys() == {"space", "supernet"}
    assert (remote / "supernet" / "checkpoints" / "last.pt").is_file()
    # a fresh machine: nothing staged locally, everything comes back from the URI
    other = {"RAYNAS_STAGING_DIR": str(tmp_path / "other-staging")}
    second = run_cli("search", "--local", "--resume", f"{uri}/tiny", **other)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "supernet: done earlier, skipped" in second.stderr
    assert pq.read_table(remote / "results" / "search.parquet").num_rows == 6
    assert pq.read_table(remote / "results" / "retrain.parquet").num_rows == 2
    assert (remote / "best_architecture.json").is_file()
    report = run_cli("report", f"{uri}/tiny", "--format", "json", RAYNAS_STAGING_DIR=str(tmp_path / "third"))
    assert report.returncode == 0 and len(report.stdout.splitlines()) == 2


@pytest.mark.parametrize("mode", ["ray", "local"])
def test_max_params_rejects_architectures_without_spending_trials(tmp_path, mode):
    limit = 2500  # most mnist1d architectures are larger
    extra = ["--local"] if mode == "local" else []
    result = run_cli("search", *extra, "--until", "search", *sets(tmp_path, "budget", [f"search.max_params={limit}"]))
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "budget"
    rows = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(rows) == 6 and all(r["params"] <= limit for r in rows)
    assert json.loads((root / "state.json").read_text())["done"]["search"]["rejected"] > 0
    if mode == "ray":  # no Tune trial was spent on a rejected architecture
        assert len([p for p in (root / "tune_search").iterdir() if p.is_dir()]) == 6


def test_retrain_command_trains_given_architectures(finished, tmp_path):
    _mode, root, _result = finished  # a directory written with or without Ray retrains alike
    archs = tmp_path / "mine.json"
    archs.write_text(json.dumps([{"op0": "conv7", "op1": "conv3", "op2": "identity", "op3": "conv5",
                                  "skip1": [], "skip2": ["stem"], "skip3": []}]))
    result = run_cli("retrain", str(root), "--archs", str(archs), "--local")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(root / "results" / "retrain-mine.parquet").to_pylist()
    assert len(rows) == 1 and json.loads(rows[0]["arch"])["op0"] == "conv7"
    assert 0.0 <= rows[0]["test_accuracy"] <= 1.0
