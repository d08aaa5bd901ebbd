"""The data pipeline through the real CLI: a lazy on-disk dataset with transforms, a model with an
auxiliary head, a custom loss and NNI-style metrics, ``search.metric`` naming one of them, in
``--local`` and on Ray with tuple inputs (where every replica and trial builds the data itself); bad objectives are
one line and exit 2 before anything is written."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from tests.datasets import write_files
from tests.experiment.cli_helpers import run_cli, sets

ARCH = {"op0": "conv3", "op1": "conv5", "op2": "identity", "op3": "conv3", "skip1": [], "skip2": ["stem"], "skip3": []}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> str:
    return str(write_files(tmp_path_factory.mktemp("files")))


def _objective(files: str, pids: str | None = None, form: str = "files") -> list[str]:
    data = {"root": files, **({"pids": pids} if pids else {})}
    return [
        f"data.name=tests.datasets:load_{form}",
        f"data.kwargs={json.dumps(data)}",
        f"model.factory=tests.datasets:{'tuple_aux' if form == 'tuples' else 'aux'}_supernet",
        "supernet.batch_size=32",
        "supernet.loss=tests.datasets:aux_loss",
        "supernet.metrics=tests.datasets:top_metrics",
        "search.loss=tests.datasets:aux_loss",
        "search.metrics=tests.datasets:top_metrics",
        "search.metric=val_top2",
        "search.batch_size=32",
        "retrain.loss=tests.datasets:aux_loss",
        "retrain.metrics=tests.datasets:top_metrics",
        "retrain.batch_size=64",
    ]


BAD = [
    (["supernet.loss=no_such_pkg.losses:ce"], "cannot import module 'no_such_pkg.losses'"),
    (["search.loss=tests.datasets:vector_loss"], "search.loss must return a scalar tensor, got (2,)"),
    (["search.metrics=tests.datasets:top_metrics", "search.metric=val_top2"],
     "search.metric 'val_top2' is not reported with retrain.metrics 'the default accuracy'"),
    (["search.metric=val_top2"], "search.metric 'val_top2' is not reported with search.metrics 'the default accuracy'"),
    (["supernet.metrics=top_metrics"], "supernet.metrics must be written 'package.module:name', got 'top_metrics'"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_objectives_are_one_line_and_exit_2_before_anything_is_written(files, tmp_path, extra, message):
    args = ["data.name=tests.datasets:load_files", f"data.kwargs={{root: {files}}}", *extra]
    result = run_cli("search", "--local", *sets(tmp_path, "bad", args))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "bad").exists()


def _check_results(root) -> None:
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert search and all(r["status"] == "ok" and 0 <= r["val_top2"] <= 1 for r in search)
    assert all(r["val_acc1"] <= r["val_top2"] and r["val_accuracy"] is None for r in search)
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert retrain and all(0 <= r["test_top2"] <= 1 and r["val_top2"] is not None for r in retrain)
    epochs = json.loads((root / "supernet" / "supernet_metrics.json").read_text())
    assert set(epochs[0]["metrics"]) == {"acc1", "top2"}


def test_local_run_with_files_transforms_and_a_custom_objective(files, tmp_path):
    result = run_cli("search", "--local", *sets(tmp_path, "files", _objective(files)))
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "files"
    _check_results(root)
    archs = tmp_path / "archs.json"
    archs.write_text(json.dumps([ARCH]))
    scored = run_cli("eval", str(root), "--archs", str(archs), "--format", "json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    row = json.loads(scored.stdout.strip().splitlines()[-1])
    assert {"val_loss", "val_acc1", "val_top2"} <= set(row)


@pytest.mark.slow
def test_on_ray_every_replica_and_trial_builds_the_data_itself(files, tmp_path):
    """Tuple inputs ``((x, mask), y)`` on Ray, in every phase."""
    pids = tmp_path / "pids"
    pids.mkdir()
    extra = [*_objective(files, str(pids), form="tuples"), "supernet.replicas=2", "data.workers=1", "retrain.top_k=1"]
    result = run_cli("search", *sets(tmp_path, "ray", extra))
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(tmp_path / "ray")
    callers = {int(p) for p in os.listdir(pids)}
    # the driver (checks, path costs), two replica actors, and the search / retrain trial workers
    assert len(callers) >= 4, callers


def test_python_callables_become_import_paths_in_the_config():
    from raynas.experiment.config import ConfigError, build_config
    from tests.datasets import aux_loss, top_metrics

    config = build_config({"retrain": {"loss": aux_loss}}, overrides={"search.metrics": top_metrics})
    assert (config.retrain.loss, config.search.metrics) == ("tests.datasets:aux_loss", "tests.datasets:top_metrics")
    with pytest.raises(ConfigError, match="supernet.loss must be importable by name in every process"):
        build_config(overrides={"supernet.loss": lambda out, y: out.sum()})
