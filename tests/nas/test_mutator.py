import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from raynas.nas import (
    BaseMutator,
    DecisionError,
    InputChoice,
    LayerChoice,
    MutableScope,
    Mutator,
    RandomMutator,
    generate_search_space,
)
from raynas.nas.utils import ScopedFactory
from raynas.zoo.mnist1d import build_supernet
from tests.nas.helpers import Scale, tiny_net


class RandomMutatorFromTheSeed(Mutator):
    """The seed document's example, its ``sample_search`` body verbatim."""

    def __init__(self, model):
        super().__init__(model)  # don't forget to call super
        # do something else

    def sample_search(self):
        result = dict()
        for mutable in self.mutables:  # this is all the mutable modules in user model
            # mutables share the same key will be de-duplicated
            if isinstance(mutable, LayerChoice):
                # decided that this mutable should choose `gen_index`
                gen_index = np.random.randint(mutable.length)
                result[mutable.key] = torch.tensor([i == gen_index for i in range(mutable.length)],
                                                   dtype=torch.bool)
            elif isinstance(mutable, InputChoice):
                if mutable.n_chosen is None:  # n_chosen is None, then choose any number
                    result[mutable.key] = torch.randint(high=2, size=(mutable.n_candidates,)).view(-1).bool()
                # else do something else
        return result

    def sample_final(self):
        return self.sample_search()  # use the same logic here. you can do something different


def test_the_seed_random_mutator_trains_and_exports_json():
    np.random.seed(0)
    torch.manual_seed(0)
    model = build_supernet()
    mutator = RandomMutatorFromTheSeed(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    seen = set()
    for _ in range(5):
        mutator.reset()  # reset all the choices in model
        out = model(x)  # like traditional model
        loss = nn.functional.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        seen.add(json.dumps(mutator.status(), sort_keys=True))
    assert len(seen) > 1  # the path changes between resets
    exported = mutator.export()
    text = json.dumps(exported)
    assert set(json.loads(text)) == set(generate_search_space(model))
    assert exported["op0"] in ["conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity"]
    assert isinstance(exported["skip3"], list)


def test_mutables_tree_traverses_pre_and_post_order():
    mutator = RandomMutator(tiny_net())
    pre = [m.key for m in mutator.mutables.traverse(order="pre")]
    post = [m.key for m in mutator.mutables.traverse(order="post")]
    assert pre == ["Cell1", "LayerChoice2", "InputChoice3", "shared", "InputChoice4"]
    assert post == ["LayerChoice2", "InputChoice3", "Cell1", "shared", "InputChoice4"]
    assert [m.key for m in mutator.mutables] == pre
    assert len([m.key for m in mutator.mutables.traverse(deduplicate=False)]) == 6
    assert list(mutator.choice_mutables) == ["LayerChoice2", "InputChoice3", "shared", "InputChoice4"]
    assert [m.name for m in mutator.mutables] == ["cell0", "cell0.op", "cell0.inp", "first", "skip"]
    with pytest.raises(ValueError, match="'pre' or 'post', got 'in'"):
        list(mutator.mutables.traverse(order="in"))


class Pair(nn.Module):
    def __init__(self, reduction: str):
        super().__init__()
        self.op = LayerChoice(OrderedDict(a=Scale(1.0), b=Scale(2.0), c=Scale(3.0)), reduction=reduction, key="op")
        self.inp = InputChoice(n_candidates=3, reduction=reduction, key="inp", return_mask=True)

    def forward(self, x):
        return self.op(x), self.inp([x, 10 * x, 100 * x])


def _decide(mutator, op, inp):
    mutator.apply_decisions({"op": torch.tensor(op), "inp": torch.tensor(inp)})


def test_bool_mask_runs_only_chosen_candidates():
    net = Pair("sum")
    mutator = RandomMutator(net)
    _decide(mutator, [False, True, False], [True, False, True])
    out, (inp_out, mask) = net(torch.ones(2))
    assert torch.equal(out, torch.full((2,), 2.0))
    assert [c.calls for c in net.op] == [0, 1, 0]
    assert torch.equal(inp_out, torch.full((2,), 101.0))
    assert mask.tolist() == [True, False, True]


def test_float_weights_run_nonzero_candidates_and_weight_them():
    net = Pair("sum")
    mutator = RandomMutator(net)
    weights = torch.tensor([0.5, 0.0, 0.25], requires_grad=True)
    mutator.apply_decisions({"op": weights, "inp": torch.tensor([0.0, 1.0, 0.0])})
    out, (inp_out, _mask) = net(torch.ones(2))
    assert torch.allclose(out, torch.full((2,), 0.5 * 1 + 0.25 * 3))
    assert [c.calls for c in net.op] == [1, 0, 1]
    assert torch.equal(inp_out, torch.full((2,), 10.0))
    out.sum().backward()
    assert torch.allclose(weights.grad, torch.tensor([2.0, 0.0, 6.0]))  # gradients reach the weights


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [("sum", [[4.0, 4.0]]), ("mean", [[2.0, 2.0]]), ("concat", [[1.0, 1.0, 3.0, 3.0]])],
)
def test_reductions(reduction, expected):
    net = Pair(reduction)
    _decide(RandomMutator(net), [True, False, True], [True, False, False])
    out, _ = net(torch.ones(1, 2))  # concat joins along dim 1, the channels
    assert out.tolist() == expected


def test_reduction_none_returns_the_list_and_empty_selection_returns_none():
    net = Pair("none")
    _decide(RandomMutator(net), [False, False, True], [False, False, False])
    out, (inp_out, mask) = net(torch.ones(2))
    assert isinstance(out, list) and len(out) == 1 and out[0].tolist() == [3.0, 3.0]
    assert inp_out is None and not mask.any()


@pytest.mark.parametrize(
    ("decisions", "match"),
    [
        ({"op": torch.tensor([True, False, False])}, "no entry for key 'inp'"),
        ({"op": torch.tensor([True, False]), "inp": torch.ones(3)}, r"key 'op' must have shape \(3,\), got \(2,\)"),
        ({"op": [True, False, False], "inp": torch.ones(3)}, "key 'op' must be a torch.Tensor.*got list"),
        ({"op": torch.tensor([1, 0, 0]), "inp": torch.ones(3)}, "key 'op' must have dtype torch.bool or a float dtype, got torch.int64"),
        ({"op": torch.ones(3), "inp": torch.ones(3), "zzz": torch.ones(1)}, r"unknown key 'zzz'.*valid keys: op, inp"),
        ({"op": torch.ones(1, 3), "inp": torch.ones(3)}, r"key 'op' must have shape \(3,\)"),
    ],
)
def test_bad_decisions_name_the_key(decisions, match):
    mutator = RandomMutator(Pair("sum"))
    with pytest.raises(DecisionError, match=match):
        mutator.apply_decisions(decisions)


def test_forward_before_reset_is_an_error():
    net = Pair("sum")
    RandomMutator(net)
    with pytest.raises(RuntimeError, match=r"no decision for key 'op': call mutator.reset\(\)"):
        net(torch.ones(2))


def test_export_validates_sample_final():
    class Broken(RandomMutator):
        def sample_final(self):
            return {"op": torch.tensor([True, False, False])}

    with pytest.raises(DecisionError, match="no entry for key 'inp'"):
        Broken(Pair("sum")).export()


def test_status_reports_the_decision_in_force():
    net = Pair("sum")
    mutator = RandomMutator(net)
    assert mutator.status() == {}
    _decide(mutator, [False, True, False], [True, False, True])
    assert mutator.status() == {"op": [0.0, 1.0, 0.0], "inp": [1.0, 0.0, 1.0]}


def test_a_base_mutator_subclass_can_take_over_the_forward():
    class FirstCandidate(BaseMutator):
        def on_forward_layer_choice(self, mutable, *args, **kwargs):
            return mutable.choices[0](*args, **kwargs), None

        def on_forward_input_choice(self, mutable, tensor_list):
            return tensor_list[-1], None

    net = Pair("sum")
    FirstCandidate(net)
    out, (inp_out, mask) = net(torch.ones(2))
    assert out.tolist() == [1.0, 1.0] and inp_out.tolist() == [100.0, 100.0] and mask is None


def test_mutator_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Mutator(Pair("sum"))


def test_unkeyed_scope_takes_a_counter_key_and_its_path_as_alias():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scope = MutableScope()

    mutator = RandomMutator(ScopedFactory(Net)())
    assert [m.key for m in mutator.mutables] == ["MutableScope1"]
    assert mutator.parsed.aliases == {"scope": "MutableScope1"}


def test_decisions_and_chosen_indices_read_the_decision_in_force():
    net = Pair("sum")
    mutator = RandomMutator(net)
    assert mutator.decisions == {} and mutator.chosen_indices == {}  # nothing before a reset
    weights = torch.tensor([0.5, 0.0, 0.25])
    mutator.apply_decisions({"op": weights, "inp": torch.tensor([True, False, True])})
    assert mutator.decisions["op"] is weights and mutator.decisions["inp"].tolist() == [True, False, True]
    assert mutator.chosen_indices == {"op": (0, 2), "inp": (0, 2)}
    mutator.decisions.clear()  # a copy: the decision in force stays
    assert set(mutator.decisions) == {"op", "inp"}


def test_applied_puts_decisions_in_force_for_the_block_only():
    net = Pair("sum")
    mutator = RandomMutator(net)
    with mutator.applied({"op": torch.tensor([False, True, False]), "inp": torch.tensor([True, False, False])}):
        assert torch.equal(net(torch.ones(2))[0], torch.full((2,), 2.0))
    assert mutator.decisions == {}  # nothing was in force before: nothing after
    _decide(mutator, [True, False, False], [False, True, False])
    before = mutator.decisions
    with pytest.raises(ZeroDivisionError):
        with mutator.applied({"op": torch.tensor([False, False, True]), "inp": torch.tensor([True, True, True])}):
            assert mutator.chosen_indices["op"] == (2,)
            1 / 0  # noqa: B018 (the error under test)
    assert mutator.decisions == before  # restored on error too
    with pytest.raises(DecisionError, match="no entry for key 'inp'"):
        with mutator.applied({"op": torch.tensor([False, False, True])}):
            pass
    assert mutator.decisions == before


def test_bound_mutator_and_model_name_the_binding():
    from raynas.nas.mutator import bound_mutator

    net = Pair("sum")
    assert bound_mutator(net) is None
    mutator = RandomMutator(net)
    assert bound_mutator(net) is mutator and mutator.model is net
    mutator.detach()
    assert bound_mutator(net) is None and mutator.model is None
    assert all(m.mutator is None for m in mutator.undedup_mutables)


def test_the_nas_modules_import_one_way():
    """mutables <- parse <- space <- mutator <- the algorithms: no cycle, at module level or inside functions."""
    import ast
    from pathlib import Path

    import raynas.nas

    folder = Path(raynas.nas.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("raynas.nas."):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.ImportFrom) and node.module == "raynas.nas":
                deps.update(alias.name for alias in node.names if (folder / f"{alias.name}.py").exists())
        graph[path.stem] = deps - {path.stem}
    assert "mutator" not in graph["mutables"] | graph["parse"] | graph["space"]
    assert "space" not in graph["parse"] | graph["mutables"]

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join([*stack, name])}"
        for dep in graph.get(name, ()):
            visit(dep, [*stack, name])

    for name in graph:
        visit(name, [])
