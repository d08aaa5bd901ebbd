"""Bad input to the real CLI: exit code 2, one line on stderr, and no change to an experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.experiment.cli_helpers import run_cli, sets


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    result = run_cli("search", "--local", "--until", "space", *sets(storage, name="exp"), cwd=str(storage))
    assert result.returncode == 0, result.stderr
    root = storage / "exp"
    assert (root / "search_space.json").is_file()
    files = tmp_path_factory.mktemp("files")
    (files / "bad.yaml").write_text("search: [unclosed\n")
    good = {"op0": "conv3", "op1": "conv5", "op2": "conv7", "op3": "identity", "skip1": [], "skip2": [], "skip3": []}
    (files / "unknown_key.json").write_text(json.dumps([good, {**good, "op9": "conv3"}]))
    (files / "bad_index.json").write_text(json.dumps([{**good, "op2": 9}]))
    (files / "not_json.json").write_text("[{")
    (files / "ok.json").write_text(json.dumps([good]))
    return storage, root, files


CASES = [
    ("missing config", lambda s, r, f: ["search", str(f / "missing.yaml")], "config file", "does not exist"),
    ("unparsable config", lambda s, r, f: ["search", str(f / "bad.yaml")], "is not valid YAML", None),
    ("unknown key", lambda s, r, f: ["search", *sets(s, "new"), "--set", "search.nope=1"], "unknown key 'nope' in section 'search'", "valid keys: searcher"),
    ("unknown section", lambda s, r, f: ["search", "--set", "serch.num_samples=1"], "unknown section 'serch'", "valid: experiment"),
    ("bad factory", lambda s, r, f: ["search", *sets(s, "new"), "--set", "model.factory=no_such_pkg.models:build"], "cannot import module 'no_such_pkg.models'", None),
    ("missing factory name", lambda s, r, f: ["search", *sets(s, "new"), "--set", "model.factory=raynas.zoo.mnist1d:nope"], "has no attribute 'nope'", None),
    ("space mismatch", lambda s, r, f: ["search", "--resume", str(r), "--set", "model.factory=raynas.zoo.digits:build_supernet"], "does not match the search space", "key 'op0'"),
    ("negative epochs", lambda s, r, f: ["search", *sets(s, "new"), "--set", "supernet.epochs=-3"], "supernet.epochs must be >= 0, got -3", None),
    ("unknown searcher", lambda s, r, f: ["search", *sets(s, "new"), "--set", "search.searcher=searchers:NoSuchTuner"], "NoSuchTuner", None),
    ("not a searcher", lambda s, r, f: ["search", *sets(s, "new"), "--set", "search.searcher=raynas.zoo.mnist1d:build_supernet"], "must name a searchers.Tuner or ray.tune.search.Searcher", None),
    ("unknown mode", lambda s, r, f: ["search", *sets(s, "new"), "--set", "search.mode=maximal"], "search.mode must be one of max, min, got 'maximal'", None),
    ("existing experiment", lambda s, r, f: ["search", *sets(s, "exp")], "already exists", "--resume"),
    ("config and resume", lambda s, r, f: ["search", str(f / "bad.yaml"), "--resume", str(r)], "either CONFIG or --resume", None),
    ("arch unknown key", lambda s, r, f: ["eval", str(r), "--archs", str(f / "unknown_key.json")], "architecture #1", "unknown key 'op9'"),
    ("arch bad index", lambda s, r, f: ["eval", str(r), "--archs", str(f / "bad_index.json")], "got 9 for key 'op2'", None),
    ("arch not json", lambda s, r, f: ["eval", str(r), "--archs", str(f / "not_json.json")], "is not valid JSON", None),
    ("arch missing file", lambda s, r, f: ["retrain", str(r), "--local", "--archs", str(f / "none.json")], "does not exist", None),
    ("eval without supernet", lambda s, r, f: ["eval", str(r), "--archs", str(f / "ok.json")], "has no trained supernet yet", "--resume"),
    ("missing experiment dir", lambda s, r, f: ["report", str(s / "nowhere")], "experiment directory", "does not exist"),
    ("resume missing dir", lambda s, r, f: ["search", "--resume", str(s / "nowhere")], "does not exist", None),
    ("not an experiment", lambda s, r, f: ["eval", str(f), "--archs", str(f / "bad_index.json")], "not a raynas experiment directory", None),
]


@pytest.mark.parametrize(("label", "args", "message", "detail"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    experiment, tmp_path, label, args, message, detail  # noqa: ARG001
):
    storage, root, files = experiment
    before = _snapshot(root)
    cwd = tmp_path / "cwd"  # cases without experiment.storage would write ./raynas_results on a regression
    cwd.mkdir()
    result = run_cli(*args(storage, root, files), timeout=180, cwd=str(cwd))
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raynas: error: "), result.stderr[-2000:]
    assert message in lines[0]
    if detail:
        assert detail in lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(root) == before
    assert not (storage / "new").exists()
    assert not list(cwd.iterdir())
