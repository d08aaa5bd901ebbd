"""The best architecture's graph is traced from the model's own data flow, for any model."""

from __future__ import annotations

import torch

from raynas.nas.parse import parse_model
from raynas.nas.space import model_choices
from raynas.report.graph import architecture_graph, graph_svg
from raynas.train.resolve import resolve_factory
from raynas.zoo.mnist1d import build_supernet
from tests.models import build_darts


def _labelled(graph):
    label = {n["id"]: n["label"] for n in graph.nodes}
    return {(label[a], label[b]) for a, b in graph.edges}


def test_mnist1d_blocks_chosen_ops_and_skips():
    arch = {
        "op0": "conv7",
        "op1": "identity",
        "op2": "conv3",
        "op3": "maxpool3",
        "skip1": ["stem"],
        "skip2": [],
        "skip3": ["op0", "op1"],
    }
    graph = architecture_graph(build_supernet, arch, torch.randn(1, 1, 40))
    details = {n["label"]: n["detail"] for n in graph.nodes}
    assert details["op1"] == "identity" and details["skip3"] == "op0 + op1"
    assert graph.idle == ["skip2"]  # chose no input: it adds nothing and is not drawn
    assert _labelled(graph) == {
        ("input", "op0"),
        ("op0", "op1"),
        ("input", "skip1"),  # skip1 = the stem's output
        ("op1", "op2"),
        ("skip1", "op2"),  # block 1 = op1 + skip1 feeds op2
        ("op2", "op3"),
        ("op0", "skip3"),
        ("op1", "skip3"),
        ("skip1", "skip3"),  # "op1" names block 1's output
        ("op3", "output"),
        ("skip3", "output"),
    }
    svg = graph_svg(graph)
    assert svg.count('class="mark node"') == len(graph.nodes) and svg.count('class="mark edge"') == len(graph.edges)


def test_a_darts_cell_shows_which_edges_each_node_sums():
    factory = resolve_factory(build_darts)  # NNI's counter keys, the same in every build (as experiments build)
    model = factory()
    choices = model_choices(model)
    arch = {key: (list(c.candidates[:2]) if c.type == "input_choice" else "conv3x3") for key, c in choices.items()}
    graph = architecture_graph(factory, arch, torch.randn(2, 3, 8, 8))
    edges = _labelled(graph)
    for key, c in choices.items():
        if c.type == "input_choice":  # exactly its two chosen edges flow into it
            assert {a for a, b in edges if b == key} == set(c.candidates[:2]), key
    assert len(parse_model(model).choices) == len(graph.nodes) - 2 and not graph.idle
