"""The chosen architecture of any model as a graph, and that graph as SVG.

The nodes are the model's mutables (a LayerChoice shows its chosen op, an InputChoice the inputs
it sums or concatenates), plus the model's input and output. The edges are the data flow between
them, found by running the fixed model once on one example and following the autograd graph
back from each mutable's output to the outputs of the mutables (or the input) it was computed
from. So the drawing needs no knowledge of the model's code: what ran is what is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = ["ArchGraph", "architecture_graph", "graph_svg"]


@dataclass
class ArchGraph:
    """Nodes in execution order (``{"id", "label", "detail", "kind"}``) and ``(source, target)`` edges.

    ``idle`` lists the mutables that did not run or produced nothing (a pruned op, an empty skip).
    """

    nodes: list[dict[str, str]] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    idle: list[str] = field(default_factory=list)


def _tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _detail(value: Any) -> str:
    if isinstance(value, list):
        return " + ".join(str(v) for v in value) if value else "nothing"
    return str(value)


class _Tracer:
    """Maps autograd nodes to the graph node whose output they are, and builds the graph."""

    def __init__(self, inputs: list[Any]):
        self.produced: dict[Any, str] = {}
        self.inputs = {id(t) for t in inputs}
        self.graph = ArchGraph(nodes=[{"id": "input", "label": "input", "detail": "", "kind": "io"}])
        self.ran: set[str] = set()

    def sources(self, tensors: list[Any]) -> set[str]:
        """The graph nodes (or ``input``) whose outputs ``tensors`` were computed from."""
        found: set[str] = set()
        stack = [t.grad_fn for t in tensors]
        seen: set[int] = set()
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            if fn in self.produced:
                found.add(self.produced[fn])
                continue
            if id(getattr(fn, "variable", None)) in self.inputs:
                found.add("input")
                continue
            stack.extend(next_fn for next_fn, _ in fn.next_functions)
        return found

    def hook(self, node: dict[str, str]) -> Callable[..., Any]:
        """A forward hook that adds ``node`` (and its incoming edges) the first time it runs."""

        def record(_module: Any, _args: Any, output: Any) -> Any:
            outs = [t for t in _tensors(output) if t.grad_fn is not None or id(t) in self.inputs]
            if not outs or node["id"] in self.ran:
                return None
            self.ran.add(node["id"])
            self.graph.nodes.append(node)
            self.graph.edges += [(src, node["id"]) for src in sorted(self.sources(outs) or {"input"})]
            if len(outs) == 1 and outs[0] is output and (output.grad_fn in self.produced or output.grad_fn is None):
                output = output.clone()  # passed a tensor through (identity, one chosen input): its own node
                outs = [output]
            for t in outs:
                if t.grad_fn is not None:
                    self.produced[t.grad_fn] = node["id"]
            return output

        return record


def architecture_graph(model_factory: Callable[[], Any], arch: Mapping[str, Any], example: Any) -> ArchGraph:
    """Run ``model_factory()`` fixed to ``arch`` on ``example`` and record what flowed where.

    Args:
        model_factory: builds the supernet.
        arch: the architecture (any form :func:`raynas.nas.apply_fixed_architecture` takes).
        example: one input batch (a tensor, or a tuple / dict of them, as the model takes it).
    """
    import torch

    from raynas.nas import apply_fixed_architecture
    from raynas.nas.mutables import InputChoice, LayerChoice
    from raynas.nas.parse import parse_model

    model = model_factory()
    choices = [(k, p) for k, p, m in parse_model(model).instances if isinstance(m, (LayerChoice, InputChoice))]
    kinds = {p: "op" if isinstance(m, LayerChoice) else "input" for _k, p, m in parse_model(model).instances}
    chosen = apply_fixed_architecture(model, arch).export()
    model.eval()
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in _tensors(example)]
    example = _rebuild(example, iter(inputs))
    tracer = _Tracer(inputs)
    handles = [
        model.get_submodule(path).register_forward_hook(
            tracer.hook({"id": path, "label": key, "detail": _detail(chosen.get(key)), "kind": kinds[path]})
        )
        for key, path in choices
        if path  # the model itself is a choice: nothing to trace around it
    ]
    try:
        with torch.enable_grad():
            output = model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for handle in handles:
            handle.remove()
    graph = tracer.graph
    graph.nodes.append({"id": "output", "label": "output", "detail": "", "kind": "io"})
    graph.edges += [(src, "output") for src in sorted(tracer.sources(_tensors(output)) or {"input"})]
    graph.idle = [key for key, path in choices if path not in tracer.ran]
    return graph


def _rebuild(value: Any, it: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return next(it)
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuild(v, it) for v in value)
    if isinstance(value, Mapping):
        return {k: _rebuild(v, it) for k, v in value.items()}
    return value


_COLORS = {"io": "#f2f2f2", "op": "#dbe9f6", "input": "#fdebd3"}


def graph_svg(graph: ArchGraph, *, title: str = "best architecture") -> str:
    """A layered drawing of ``graph``: left to right by the longest path from the input."""
    layer: dict[str, int] = {}
    preds: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
    for node in graph.nodes:  # execution order: sources come first
        layer[node["id"]] = 1 + max((layer.get(p, 0) for p in preds.get(node["id"], [])), default=-1)
    columns: dict[int, list[dict]] = {}
    for node in graph.nodes:
        columns.setdefault(layer[node["id"]], []).append(node)
    node_w, node_h, gap_x, gap_y, top = 132, 40, 46, 16, 34
    rows = max((len(c) for c in columns.values()), default=1)
    width = 12 + len(columns) * (node_w + gap_x)
    height = top + rows * (node_h + gap_y) + 10
    pos = {}
    for col, nodes in sorted(columns.items()):
        offset = (rows - len(nodes)) * (node_h + gap_y) / 2
        for r, node in enumerate(nodes):
            pos[node["id"]] = (10 + col * (node_w + gap_x), top + offset + r * (node_h + gap_y))
    font = 'font-family="system-ui, sans-serif"'
    out = [
        f'<svg class="chart graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>',
        f'<text x="10" y="20" font-size="14" font-weight="600" {font}>{escape(title)}</text>',
    ]
    for src, dst in graph.edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        x1, y1, y2 = x1 + node_w, y1 + node_h / 2, y2 + node_h / 2
        mid = (x1 + x2) / 2
        out.append(
            f'<path class="mark edge" d="M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, {x2 - 2:.0f} '
            f'{y2:.0f}" fill="none" stroke="#666" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for node in graph.nodes:
        x, y = pos[node["id"]]
        tip = escape(json.dumps({node["label"]: node["detail"]})) if node["detail"] else escape(node["label"])
        out.append(
            f'<g class="mark node"><title>{tip}</title><rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" '
            f'rx="6" fill="{_COLORS[node["kind"]]}" stroke="#777"/>'
            f'<text x="{x + node_w / 2}" y="{y + (16 if node["detail"] else 25)}" font-size="12" font-weight="600" '
            'text-anchor="middle" '
            f"{font}>{escape(node['label'][:20])}</text>"
            f'<text x="{x + node_w / 2}" y="{y + 32}" font-size="11" text-anchor="middle" {font}>'
            f"{escape(node['detail'][:22])}</text></g>"
        )
    out.append("</svg>")
    return "\n".join(out)
