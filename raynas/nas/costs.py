"""Path costs: every candidate's parameters and FLOPs, profiled once, so a path's cost is a sum.

Costs are computed once per candidate (parameters and FLOPs of a single example) and summed, so the
cost of a path is exact and cheap to evaluate for every draw:

- a LayerChoice candidate costs its own parameters and the FLOPs of running it on the input the
  LayerChoice receives (captured with hooks during one forward pass);
- an InputChoice candidate costs no parameters and one FLOP per element it adds;
- everything outside the LayerChoices is the fixed base cost.

FLOPs count multiply-accumulates of convolutions and linear layers and one per output element of
normalisation and pooling layers. The profile assumes a LayerChoice's input shape does not depend
on the path (true of cell-style spaces such as ``mnist1d``). :class:`~raynas.nas.spos.SposMutator`
samples under these costs; the sandwich rule trains :func:`largest_path`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raynas.nas.fixed import FixedArchitecture
from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.mutator import Mutator
from raynas.nas.utils import batch_size, snapshot

__all__ = ["PathCosts", "profile_costs", "largest_path", "module_flops"]

_NORM_POOL = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def module_flops(module: nn.Module, output: Any) -> int:
    """FLOPs of one leaf module's call, given its output (multiply-accumulates for conv/linear)."""
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size))
    if isinstance(module, nn.Linear):
        return int(output.numel() * module.in_features)
    if isinstance(module, _NORM_POOL):
        return int(output.numel())
    return 0


def _count_flops(run: Any, modules: list[nn.Module]) -> int:
    total = [0]

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        total[0] += module_flops(module, output)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


@dataclass(frozen=True)
class PathCosts:
    """Parameters and FLOPs (per example) of every candidate; a path's cost is a sum.

    Attributes:
        base_params: parameters outside every LayerChoice.
        base_flops: FLOPs outside every choice.
        candidates: ``{key: ((params, flops) per candidate)}`` for every LayerChoice and InputChoice.
        n_chosen: ``{key: n_chosen}`` (1 for a LayerChoice; ``None`` means any number).
    """

    base_params: int
    base_flops: int
    candidates: dict[str, tuple[tuple[int, int], ...]]
    n_chosen: dict[str, int | None]

    def cost(self, decisions: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """``(params, flops)`` of a path given as decisions (a nonzero weight counts as chosen)."""
        params, flops = self.base_params, self.base_flops
        for key, table in self.candidates.items():
            mask = decisions[key]
            chosen = mask.tolist() if mask.dtype == torch.bool else (mask != 0).tolist()
            for picked, (p, f) in zip(chosen, table):
                if picked:
                    params += p
                    flops += f
        return params, flops

    def bounds(self, metric: str) -> tuple[int, int]:
        """The cheapest and the most expensive path's ``params`` or ``flops``."""
        index = {"params": 0, "flops": 1}[metric]
        low = high = self.base_params if index == 0 else self.base_flops
        for key, table in self.candidates.items():
            values = sorted(c[index] for c in table)
            n = self.n_chosen[key]
            if n is None:
                high += sum(v for v in values if v > 0)
                low += sum(v for v in values if v < 0)
            else:
                low += sum(values[:n])
                high += sum(values[len(values) - n :]) if n else 0
        return low, high


def largest_path(costs: PathCosts) -> dict[str, torch.Tensor]:
    """The path with the most parameters (ties: more FLOPs, then the earlier candidate): each
    LayerChoice's largest candidate, each InputChoice's ``n_chosen`` largest inputs (all of them
    when ``n_chosen`` is None). The sandwich rule's "max" path."""
    out: dict[str, torch.Tensor] = {}
    for key, table in costs.candidates.items():
        n = costs.n_chosen[key]
        mask = torch.zeros(len(table), dtype=torch.bool)
        if n is None:
            mask[:] = True
        else:
            order = sorted(range(len(table)), key=lambda i: (-table[i][0], -table[i][1], i))
            mask[order[:n]] = True
        out[key] = mask
    return out


def _profiling_path(mutator: Mutator) -> dict[str, torch.Tensor]:
    """The path the profile runs: a fixed architecture's own decisions (its pruned candidates and
    edges cannot run); otherwise each LayerChoice's first candidate and every input (or the first
    ``n_chosen``) of each InputChoice."""
    if isinstance(mutator, FixedArchitecture):
        return dict(mutator.sample_search())
    path = {}
    for key, m in mutator.choice_mutables.items():
        mask = torch.zeros(m.length, dtype=torch.bool)
        if isinstance(m, LayerChoice):
            live = [i for i, cand in enumerate(m.choices) if cand is not None]
            mask[live[:1]] = True
        elif m.n_chosen is None:
            mask[:] = True
        else:
            mask[: m.n_chosen] = True
        path[key] = mask
    return path


def _choice_costs(
    choices: dict[str, Any], instances: list[tuple[str, Any]], captured: dict[int, tuple[Any, dict]]
) -> dict[str, list[list[int]]]:
    """``{key: [[params, flops], ...]}``: every LayerChoice candidate run alone on the inputs its
    choice captured, every InputChoice input counted by its size (a choice never reached costs nothing)."""
    table: dict[str, list[list[int]]] = {k: [[0, 0] for _ in range(m.length)] for k, m in choices.items()}
    for key, m in instances:
        if id(m) not in captured:
            continue  # a choice this forward never reached costs nothing
        args, kwargs = captured[id(m)]
        if isinstance(m, LayerChoice):
            for i, cand in enumerate(m.choices):
                if cand is None:
                    continue  # pruned by a fixed architecture: never runs
                table[key][i][0] += sum(p.numel() for p in cand.parameters())
                table[key][i][1] += _count_flops(lambda c=cand, a=args, k=kwargs: c(*a, **k), _leaves(cand))
        else:
            inputs = m.candidate_inputs(args[0] if args else kwargs["optional_inputs"])
            for i, t in enumerate(inputs):
                table[key][i][1] += int(t.numel()) if isinstance(t, torch.Tensor) else 0
    return table


def profile_costs(mutator: Mutator, example: Any) -> PathCosts:
    """Measure every candidate's parameters and FLOPs on one example input.

    The model is run once (in eval mode, without gradients; the path in force is restored
    afterwards) to capture each choice's inputs, then every LayerChoice candidate runs alone.
    A mutator that fixes an architecture is profiled on that architecture: its pruned candidates
    (and a LayerChoice fixed to nothing, NNI's pruned edge) cost nothing.

    Args:
        mutator: a mutator bound to the model.
        example: one input batch, as the model takes it (``model(example)``): a tensor, or a
            tuple / list / dict of tensors; FLOPs are reported per example (divided by its batch
            size, the first dimension of its first tensor).

    Returns:
        The :class:`PathCosts` table.
    """

    model = mutator.model
    batch = batch_size(example)
    choices = mutator.choice_mutables
    instances = [(k, m) for k, _p, m in mutator.parsed.instances if isinstance(m, (LayerChoice, InputChoice))]
    inside: set[int] = set()
    for _k, m in instances:
        if isinstance(m, LayerChoice):
            inside.update(id(x) for x in m.modules())
    captured: dict[int, tuple[Any, dict]] = {}

    def pre_hook(module: nn.Module, args: Any, kwargs: dict) -> None:
        # copies of the containers: a caller may append to the list it passed after the call
        captured.setdefault(id(module), (snapshot(args), snapshot(kwargs)))

    was_training = model.training
    handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for _k, m in instances]
    try:
        model.eval()
        with mutator.applied(_profiling_path(mutator)):  # the path in force comes back after
            base_leaves = [x for x in _leaves(model) if id(x) not in inside]
            base_flops = _count_flops(lambda: model(example), base_leaves)
            table = _choice_costs(choices, instances, captured)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    base_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()) - sum(
        sum(p.numel() for p in m.parameters()) for _k, m in instances if isinstance(m, LayerChoice)
    )
    return PathCosts(
        base_params=int(base_params),
        base_flops=int(base_flops // batch),
        candidates={k: tuple((int(p), int(f // batch)) for p, f in v) for k, v in table.items()},
        n_chosen={k: (1 if isinstance(m, LayerChoice) else m.n_chosen) for k, m in choices.items()},
    )
