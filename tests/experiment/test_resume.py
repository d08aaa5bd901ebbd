"""The driver killed (SIGKILL) mid-search and mid-retrain: ``--resume`` keeps what was done,
runs the rest, and evaluates nothing twice.

The kills are triggered by progress, not by time: the model plug-in ``tests.experiment.gated``
holds the run at a chosen architecture / epoch until the test has killed the driver, and the test
waits until the run's own files show that point (Tune's experiment snapshot, the local progress
file) before it kills.
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from tests.experiment.cli_helpers import cli_args, env, kill_now, run_cli, sets, wait_for

pytestmark = pytest.mark.slow

N = 12  # architectures to score
K = 4  # scored before the kill
EPOCHS = 3  # retrain epochs; the kill comes after the first
MAX_PARAMS = 3000  # about half the space: ConstrainedSearcher is in the resumed searcher too


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli_args(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), start_new_session=True
    )


def _gated(tmp_path, **kwargs) -> list[str]:
    """Settings of the gated model; its gates are files under ``tmp_path``."""
    out = ["model.factory=tests.experiment.gated:build", f"search.max_params={MAX_PARAMS}"]
    for key, value in kwargs.items():
        out.append(f"model.kwargs.{key}={tmp_path / value if key.endswith('_gate') else value}")
    return out


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _holding(gate) -> int:
    return len(glob.glob(f"{gate}.holding-*"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _open(gate) -> None:
    """Open ``gate`` once the killed run's holding processes are gone (a Ray worker outlives its
    killed driver for a moment; opened earlier, it would go on scoring for a dead run)."""
    pids = [int(p.rsplit("-", 1)[1]) for p in glob.glob(f"{gate}.holding-*")]
    wait_for(lambda: not any(_alive(pid) for pid in pids), 120, "the killed run's held processes to exit")
    gate.touch()


def _snapshot(tune_dir) -> dict[str, tuple[str, dict]]:
    """Tune's newest experiment snapshot: ``{trial_id: (status, last result)}`` ({} if none yet)."""
    paths = sorted(glob.glob(str(tune_dir / "experiment_state-*.json")))
    if not paths:
        return {}
    try:
        with open(paths[-1]) as f:
            data = json.load(f)
    except (OSError, ValueError):  # being written: read it on the next poll
        return {}
    out = {}
    for trial_json, metadata in data["trial_data"]:
        trial = json.loads(trial_json)
        out[trial["trial_id"]] = (trial["status"], json.loads(metadata).get("last_result") or {})
    return out


def _trial_dirs(tune_dir) -> list:
    return [p for p in tune_dir.iterdir() if p.is_dir()]


def test_driver_killed_during_search_and_during_retrain_then_resumed(tmp_path):
    root = tmp_path / "resumed"
    search_gate, retrain_gate = tmp_path / "search-gate", tmp_path / "retrain-gate"
    scored, validations = tmp_path / "search-gate.scored", tmp_path / "retrain-gate.validations"
    extra = [f"search.num_samples={N}", "search.max_concurrent=1", "retrain.top_k=2", f"retrain.epochs={EPOCHS}"]
    extra += _gated(tmp_path, search_gate="search-gate", search_after=K, retrain_gate="retrain-gate", retrain_after=1)

    # 1. killed inside the search: K architectures scored, the next one held, Tune's snapshot current
    proc = _start("search", *sets(tmp_path, "resumed", extra))

    def search_held() -> bool:
        done = [s for s, _ in _snapshot(root / "tune_search").values() if s == "TERMINATED"]
        return _holding(search_gate) == 1 and len(done) == len(_lines(scored)) == K

    try:
        wait_for(search_held, 300, f"{K} scored search trials in Tune's snapshot", proc)
    finally:
        kill_now(proc)
    before = {t: r for t, (s, r) in _snapshot(root / "tune_search").items() if s == "TERMINATED"}
    assert len(before) == K
    assert set(json.loads((root / "state.json").read_text())["done"]) == {"space", "supernet"}
    assert not (root / "results" / "search.parquet").exists()

    # 2. resumed, then killed inside the retrain: each trial held after its first epoch's checkpoint
    _open(search_gate)
    proc = _start("search", "--resume", str(root))

    def retrain_held() -> bool:
        trials = _snapshot(root / "tune_retrain").values()
        running = [r for s, r in trials if s == "RUNNING"]
        return bool(running) and _holding(retrain_gate) == len(running) and all(r.get("epoch") == 1 for r in running)

    try:
        wait_for(retrain_held, 400, "retrain trials held after their first epoch", proc)
    finally:
        kill_now(proc)
    assert set(json.loads((root / "state.json").read_text())["done"]) == {"space", "supernet", "search"}
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    # what resume means: the rows of before the kill, unchanged; the rest; nothing scored twice
    rows = {r["trial_id"]: r for r in search}
    assert len(search) == len(rows) == N and all(r["status"] == "ok" for r in search)
    assert set(before) <= set(rows), "trials finished before the kill are missing"
    for trial_id, result in before.items():
        assert {k: rows[trial_id][k] for k in ("arch", "val_accuracy", "wall_s")} == {
            k: result[k] for k in ("arch", "val_accuracy", "wall_s")
        }
    assert len(_lines(scored)) == N and len(_trial_dirs(root / "tune_search")) == N
    assert len({r["arch"] for r in search}) == N and all(r["params"] <= MAX_PARAMS for r in search)
    # the count of proposals over MAX_PARAMS goes on from the killed run's (Tune's own copy of the
    # searcher ran the resumed search)
    assert json.loads((root / "state.json").read_text())["done"]["search"]["rejected"] > 0

    # 3. resumed again: the retrain trials continue from their checkpoints
    _open(retrain_gate)
    result = run_cli("search", "--resume", str(root))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "search: done earlier, skipped" in result.stderr
    assert pq.read_table(root / "results" / "search.parquet").to_pylist() == search
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert sorted(r["rank"] for r in retrain) == [0, 1] and len(_trial_dirs(root / "tune_retrain")) == 2
    assert all(r["status"] == "ok" and r["epochs"] == EPOCHS and r["test_accuracy"] is not None for r in retrain)
    per_trial = [_lines(validations).count(t) for t in {r["trial_id"] for r in retrain}]
    assert per_trial == [EPOCHS, EPOCHS]  # epoch 1 before the kill, 2.. after it: none trained twice
    assert (root / "best_architecture.json").is_file()


def test_local_search_killed_and_resumed_keeps_every_row(tmp_path):
    root = tmp_path / "local"
    gate, scored = tmp_path / "search-gate", tmp_path / "search-gate.scored"
    progress = root / "results" / ".search_progress.json"
    extra = [f"search.num_samples={N}", "retrain.top_k=1", "retrain.epochs=1"]
    extra += _gated(tmp_path, search_gate="search-gate", search_after=K)
    proc = _start("search", "--local", *sets(tmp_path, "local", extra))
    try:
        wait_for(lambda: _holding(gate) == 1, 300, f"{K} local rows", proc)
    finally:
        kill_now(proc)
    before = json.loads(progress.read_text())["rows"]
    assert len(before) == len(_lines(scored)) == K
    _open(gate)
    result = run_cli("search", "--resume", str(root), "--local")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert rows[:K] == before  # the rows of before the kill, unchanged (their wall_s too)
    assert len(rows) == len({r["trial_id"] for r in rows}) == N and len(_lines(scored)) == N
    assert len({r["arch"] for r in rows}) == N  # the restored tuner repeats no architecture
    assert all(r["params"] <= MAX_PARAMS for r in rows)


def test_ctrl_c_in_the_search_on_ray_stops_it_unfinished(tmp_path):
    """SIGINT (Ctrl-C) while a search trial is held: Tune saves its state and stops, and the run
    says so and ends with 130 instead of taking the trials done so far for the whole search."""
    root = tmp_path / "stopped"
    gate = tmp_path / "search-gate"
    extra = ["search.num_samples=6", "search.max_concurrent=1", "retrain.top_k=1", "retrain.epochs=1"]
    proc = subprocess.Popen(cli_args("search", *sets(tmp_path, "stopped", extra + _gated(tmp_path, search_gate="search-gate", search_after=2))),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: _holding(gate) == 1, 300, "a search trial held after 2 scored", proc)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_now(proc)
    assert proc.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("raynas: interrupted: stopped by Ctrl-C; the Tune experiment's state is saved in ")
    assert "Traceback" not in err
    assert set(json.loads((root / "state.json").read_text())["done"]) == {"space", "supernet"}
    assert not (root / "results" / "search.parquet").exists()
