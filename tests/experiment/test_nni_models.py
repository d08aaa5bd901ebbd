"""Models written with NNI's forward idioms (tests/models.py) go through every phase of `raynas search`.

The four models: DARTS cells (unkeyed edges, InputChoice over their keys, NNI's pruned edges),
ENAS micro cells (an InputChoice gets a list its caller appends to afterwards, return_mask choices),
SPOS ShuffleNet blocks (``.key`` read in ``__init__``, trained under ``spos``), and a TextNAS-style
model on ``(ids, mask)`` tuples from a map-style Dataset. Every model runs ``--local``; the text model
also runs on Ray with 2 replicas: it holds every idiom that broke (a tuple input from a map-style
Dataset, and a skip InputChoice given the list its caller appends to afterwards, as ENAS does), and
Ray runs the same per-trial code as ``--local`` (one Ray run keeps the file near 3 minutes on 2 cores).
Then an architecture file as NNI exports it for the DARTS model (counter keys, ``[]`` for pruned
edges) goes through ``raynas eval --archs`` and ``raynas retrain --archs --local``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import tests.models as models
from raynas.nas import RandomMutator, apply_fixed_architecture, generate_search_space
from raynas.nas.space import to_decisions
from raynas.nas.utils import ScopedFactory, to_device
from raynas.train import profile_costs
from raynas.train.data import Batches as _Batches
from tests.experiment.cli_helpers import run_cli, sets

ROOT = Path(__file__).resolve().parents[2]

#: model -> (factory, data function, extra settings)
CASES = {
    "darts": ("tests.models:build_darts", "tests.models:image_data", []),
    "enas": ("tests.models:build_enas", "tests.models:image_data", ["data.kwargs={plain: true, shape: [3, 6, 6]}"]),
    "spos": ("tests.models:build_spos", "tests.models:image_data", ["supernet.algorithm=spos"]),
    "text": ("tests.models:build_text", "tests.models:text_data", []),
}
#: 40 training samples: batches small enough for a few steps per epoch
SMALL = ["supernet.batch_size=8", "retrain.batch_size=8", "search.batch_size=16"]
RAY_EXTRA = {"text": ["supernet.replicas=2"], "spos": ["supernet.replicas=2"]}

#: what NNI's DARTS export writes for tests.models.DartsNet built first in a process: counter keys,
#: the node InputChoices name their two kept edges, the third edge of each second node is pruned
NNI_DARTS_ARCH = {
    "InputChoice10": ["LayerChoice8", "LayerChoice9"],
    "InputChoice14": ["LayerChoice11", "LayerChoice13"],
    "InputChoice3": ["LayerChoice1", "LayerChoice2"],
    "InputChoice7": ["LayerChoice4", "LayerChoice6"],
    "LayerChoice1": "conv3x3",
    "LayerChoice11": "skipconnect",
    "LayerChoice12": [],
    "LayerChoice13": "conv3x3",
    "LayerChoice2": "skipconnect",
    "LayerChoice4": "maxpool",
    "LayerChoice5": [],
    "LayerChoice6": "conv3x3",
    "LayerChoice8": "conv3x3",
    "LayerChoice9": "maxpool",
}


def _data(name: str) -> dict:
    if name == "enas":
        return models.image_data(plain=True, shape=(3, 6, 6))
    return models.text_data() if name == "text" else models.image_data()


def _batch(name: str, n: int) -> tuple:
    return _Batches(_data(name)["train"], torch.device("cpu")).take(torch.arange(n))


def _factory(name: str) -> ScopedFactory:
    return ScopedFactory(getattr(models, CASES[name][0].split(":")[1]))


# -- in-process checks of the pieces ---------------------------------------------------------------


def test_profiler_keeps_the_inputs_a_choice_received_when_the_caller_appends_later():
    model = _factory("enas")()
    x, _y = _batch("enas", 2)
    costs = profile_costs(RandomMutator(model), x)
    # reduce_node_1 chooses among the layer's 2 inputs and node 0; the list grew to 4 afterwards
    assert len(costs.candidates["reduce_node_1_x_input"]) == 3
    assert all(f > 0 for _p, f in costs.candidates["reduce_node_1_x_input"])
    assert costs.candidates["normal_node_0_x_op"][0][0] > 0  # the conv candidate's parameters


def test_pruned_edges_cost_nothing_and_a_fixed_model_costs_what_the_supernet_table_says():
    factory = _factory("darts")
    x, _y = _batch("darts", 2)
    supernet = factory()
    expected = profile_costs(RandomMutator(supernet), x).cost(to_decisions(NNI_DARTS_ARCH, supernet))
    fixed = factory()
    mutator = apply_fixed_architecture(fixed, NNI_DARTS_ARCH)
    costs = profile_costs(mutator, x)
    assert costs.cost(mutator._decisions) == expected
    assert expected[0] == sum(p.numel() for p in fixed.parameters())  # the pruned edges' weights are gone
    assert costs.candidates["LayerChoice5"] == ((0, 0), (0, 0), (0, 0))

    # three nodes, each keeping its two latest edges: the third node's first two edges are pruned,
    # so the profile must run the fixed architecture's own path (a default one reaches only None)
    factory = ScopedFactory(lambda: models.build_darts(nodes=3))
    supernet = factory()
    arch = {}
    for node in (m for m in supernet.modules() if isinstance(m, models.DartsNode)):
        keys = [edge.key for edge in node.edges]
        arch[node.input_switch.key] = keys[-2:]
        arch.update({k: [] for k in keys[:-2]} | {k: "conv3x3" for k in keys[-2:]})
    expected = profile_costs(RandomMutator(supernet), x).cost(to_decisions(arch, supernet))
    fixed = factory()
    mutator = apply_fixed_architecture(fixed, arch)
    assert profile_costs(mutator, x).cost(mutator._decisions) == expected


def test_tuple_inputs_are_batched_moved_and_profiled_per_example():
    # collated as NNI's DataLoader collates ((ids, mask), label) items, moved to the device recursively
    (ids, mask), y = _Batches(models.text_data()["train"], torch.device("meta")).take(torch.arange(4))
    assert ids.shape == mask.shape == (4, 12) and ids.dtype == torch.int64 and y.shape == (4,)
    assert ids.device.type == mask.device.type == y.device.type == "meta"
    (ids, mask), y = _batch("text", 4)
    moved = to_device(((ids, [mask]), {"y": y}, 3), "meta")
    assert moved[0][0].is_meta and moved[0][1][0].is_meta and moved[1]["y"].is_meta and moved[2] == 3
    assert isinstance(moved[0], tuple) and isinstance(moved[0][1], list)
    model = _factory("text")()
    one = profile_costs(RandomMutator(model), _batch("text", 1)[0])
    model = _factory("text")()
    four = profile_costs(RandomMutator(model), (ids, mask))
    assert one == four and one.base_flops > 0  # FLOPs per example: the batch size is read from the tuple


def test_spos_model_reads_the_keys_of_its_blocks_in_init():
    model = _factory("spos")()
    keys = [f"LayerChoice{i}" for i in range(1, 5)]
    assert sorted(model._parsed_flops) == sorted(generate_search_space(model)) == keys


# -- `raynas search` end to end --------------------------------------------------------------------

_RUNS: dict[tuple[str, str], tuple[Path, object]] = {}


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}  # tests.models importable by the CLI, its Ray actors and trials


def _search(name: str, mode: str, storage: Path) -> tuple[Path, object]:
    if (name, mode) not in _RUNS:
        factory, data, extra = CASES[name]
        settings = [f"model.factory={factory}", f"data.name={data}", *SMALL, *extra]
        if mode == "ray":
            settings += RAY_EXTRA.get(name, [])
        flags = ["--local"] if mode == "local" else []
        result = run_cli("search", *flags, *sets(storage, f"{name}-{mode}", settings), cwd=str(ROOT), **_env())
        assert result.returncode == 0, result.stderr[-3000:]
        _RUNS[name, mode] = (storage / f"{name}-{mode}", result)
    return _RUNS[name, mode]


RUNS = [(name, mode) for mode in ("local", "ray") for name in ("darts", "enas", "spos", "text")]


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("nni-models")


@pytest.fixture(scope="module", params=RUNS, ids=[f"{n}-{m}" for n, m in RUNS])
def finished(request, storage):
    name, mode = request.param
    root, result = _search(name, mode, storage)
    return name, mode, root, result


@pytest.mark.slow
def test_every_phase_scores_and_retrains_every_architecture(finished):
    name, mode, root, result = finished
    space = json.loads((root / "search_space.json").read_text())
    assert space == generate_search_space(_factory(name)())
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(search) == 6 and all(r["status"] == "ok" for r in search), search
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["params"] > 0 and r["flops"] > 0 for r in search)
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(retrain) == 2 and all(r["status"] == "ok" and r["epochs"] == 2 for r in retrain), retrain
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["flops"] > 0 for r in retrain)
    if mode == "ray":
        assert (root / "tune_search").is_dir() and (root / "tune_retrain").is_dir()
        supernet = json.loads((root / "state.json").read_text())["done"]["supernet"]
        replicas = 2 if "supernet.replicas=2" in RAY_EXTRA.get(name, []) else 1
        assert supernet["replicas"] == replicas and supernet["steps"] == 40 // replicas // 8


@pytest.mark.slow
def test_the_best_architecture_applies_and_runs(finished):
    name, _mode, root, _result = finished
    best = json.loads((root / "best_architecture.json").read_text())
    model = _factory(name)()
    mutator = apply_fixed_architecture(model, best)
    assert mutator.export() == best
    model.eval()
    x, y = _batch(name, 4)
    with torch.no_grad():
        assert model(x).shape == (4, 4 if name != "text" else 2)


@pytest.mark.slow
def test_an_nni_exported_darts_architecture_evaluates_and_retrains(storage, tmp_path):
    root, _result = _search("darts", "local", storage)
    assert sorted(json.loads((root / "search_space.json").read_text())) == sorted(NNI_DARTS_ARCH)
    archs = tmp_path / "nni.json"
    archs.write_text(json.dumps(NNI_DARTS_ARCH, indent=2, sort_keys=True))  # as NNI's trainer.export writes it
    fixed = _factory("darts")()
    apply_fixed_architecture(fixed, NNI_DARTS_ARCH)
    params = sum(p.numel() for p in fixed.parameters())

    result = run_cli("eval", str(root), "--archs", str(archs), "--format", "json", cwd=str(ROOT), **_env())
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["arch"] == NNI_DARTS_ARCH
    assert 0.0 <= row["val_accuracy"] <= 1.0 and row["params"] == params and row["flops"] > 0

    result = run_cli("retrain", str(root), "--archs", str(archs), "--local", cwd=str(ROOT), **_env())
    assert result.returncode == 0, result.stderr[-3000:]
    (trained,) = pq.read_table(root / "results" / "retrain-nni.parquet").to_pylist()
    assert trained["status"] == "ok" and trained["epochs"] == 2 and 0.0 <= trained["test_accuracy"] <= 1.0
    assert trained["params"] == params and trained["flops"] == row["flops"]  # the same cost table either way
    assert json.loads(trained["arch"]) == NNI_DARTS_ARCH
