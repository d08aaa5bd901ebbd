"""The driver killed mid-search and mid-retrain: ``--resume`` finishes with the row counts of an
uninterrupted run, without duplicates."""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq
import pytest

from tests.experiment.cli_helpers import cli_args, env, kill_group, run_cli, sets, wait_for

pytestmark = pytest.mark.slow

EXTRA = ["search.num_samples=300", "search.max_concurrent=1", "retrain.top_k=2", "retrain.epochs=8"]


def _finished_trials(folder):
    return [p for p in folder.glob("*/result.json") if p.stat().st_size > 0] if folder.is_dir() else []


def _start(*args):
    return subprocess.Popen(
        cli_args(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), start_new_session=True
    )


def test_driver_killed_during_search_and_during_retrain_then_resumed(tmp_path):
    root = tmp_path / "resumed"
    proc = _start("search", *sets(tmp_path, "resumed", EXTRA))
    try:
        wait_for(lambda: len(_finished_trials(root / "tune_search")) >= 1, 300, "a finished search trial", proc)
    finally:
        kill_group(proc)
    state = json.loads((root / "state.json").read_text())
    assert set(state["done"]) == {"space", "supernet"}  # killed inside the search phase
    assert not (root / "results" / "search.parquet").exists()

    proc = _start("search", "--resume", str(root))
    try:
        wait_for(
            lambda: any((root / "tune_retrain").glob("*/checkpoint_000001")) if (root / "tune_retrain").is_dir() else False,
            400,
            "a retrain checkpoint",
            proc,
        )
    finally:
        kill_group(proc)
    state = json.loads((root / "state.json").read_text())
    assert set(state["done"]) == {"space", "supernet", "search"}  # killed inside the retrain phase
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(search) == 300 and len({r["trial_id"] for r in search}) == 300
    assert all(r["status"] == "ok" for r in search)

    result = run_cli("search", "--resume", str(root))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "search: done earlier, skipped" in result.stderr
    assert pq.read_table(root / "results" / "search.parquet").num_rows == 300
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(retrain) == 2 and sorted(r["rank"] for r in retrain) == [0, 1]
    assert all(r["epochs"] == 8 and r["test_accuracy"] is not None for r in retrain)
    assert (root / "best_architecture.json").is_file()


def test_local_search_killed_and_resumed_keeps_every_row(tmp_path):
    root = tmp_path / "local"
    progress = root / "results" / ".search_progress.json"
    proc = _start("search", "--local", *sets(tmp_path, "local", ["search.num_samples=40", "retrain.top_k=1", "retrain.epochs=1"]))
    try:
        wait_for(lambda: progress.is_file() and len(json.loads(progress.read_text())["rows"]) >= 5, 300, "5 local rows", proc)
    finally:
        kill_group(proc)
    result = run_cli("search", "--resume", str(root), "--local")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(rows) == 40 and len({r["trial_id"] for r in rows}) == 40
    assert len({r["arch"] for r in rows}) == 40  # the restored tuner repeats no architecture
