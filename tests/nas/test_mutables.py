from collections import OrderedDict

import pytest
import torch
from torch import nn

from raynas.nas import InputChoice, LayerChoice, MutableScope, MutatorBindingError, RandomMutator, generate_search_space
from raynas.nas.utils import ScopedFactory, reset_global_mutable_counting
from tests.nas.helpers import Scale, TinyNet, tiny_net


def test_layer_choice_from_list_names_candidates_by_position():
    lc = LayerChoice([nn.ReLU(), nn.Tanh(), nn.Identity()], key="op")
    assert lc.names == ["0", "1", "2"]
    assert len(lc) == lc.length == 3
    assert isinstance(lc[1], nn.Tanh) and isinstance(lc["2"], nn.Identity)
    assert [type(m) for m in lc] == [nn.ReLU, nn.Tanh, nn.Identity]
    assert lc.key == "op"


def test_layer_choice_from_ordered_dict_keeps_names_and_order():
    lc = LayerChoice(OrderedDict(b=nn.ReLU(), a=nn.Tanh()))
    assert lc.names == ["b", "a"]
    assert isinstance(lc["a"], nn.Tanh) and isinstance(lc[0], nn.ReLU)
    with pytest.raises(KeyError, match=r"no candidate 'zzz'.*valid: b, a"):
        lc["zzz"]
    with pytest.raises(IndexError, match="out of range"):
        lc[5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"op_candidates": []}, ValueError, "must not be empty"),
        ({"op_candidates": [nn.ReLU(), "relu"]}, TypeError, "must be an nn.Module, got str"),
        ({"op_candidates": nn.ReLU()}, TypeError, "must be a list or a dict"),
        ({"op_candidates": {"": nn.ReLU()}}, TypeError, "non-empty strings"),
        ({"op_candidates": [nn.ReLU()], "reduction": "max"}, ValueError, r"unknown reduction 'max'.*sum, mean, concat, none"),
        ({"op_candidates": [nn.ReLU()], "key": ""}, ValueError, "key must be a non-empty string"),
        ({"op_candidates": {"names": nn.ReLU()}}, ValueError, "candidate name 'names' of LayerChoice .* is reserved"),
        ({"op_candidates": {"a.b": nn.ReLU()}}, TypeError, "without '.', got 'a.b'"),
    ],
)
def test_layer_choice_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LayerChoice(**kwargs)


def test_input_choice_attributes_and_defaults():
    ic = InputChoice(n_candidates=3)
    assert (ic.n_candidates, ic.length, len(ic), ic.n_chosen, ic.choose_from) == (3, 3, 3, None, ["", "", ""])
    named = InputChoice(choose_from=["a", "b"], n_chosen=1, key="k")
    assert named.n_candidates == 2 and named.key == "k"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs n_candidates or choose_from"),
        ({"n_candidates": 3, "choose_from": ["a", "b"]}, "disagrees with len"),
        ({"n_candidates": 2, "n_chosen": 3}, r"n_chosen must be None or between 0 and 2, got 3"),
        ({"n_candidates": 2, "n_chosen": -1}, "got -1"),
        ({"n_candidates": 0}, "positive int, got 0"),
        ({"choose_from": ["a", "a"]}, "distinct"),
        ({"n_candidates": 2, "reduction": "prod"}, "unknown reduction 'prod'"),
    ],
)
def test_input_choice_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        InputChoice(**kwargs)


def test_input_choice_takes_a_list_or_a_dict_in_choose_from_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.ic = InputChoice(choose_from=["a", "b"], n_chosen=1, key="ic")

        def forward(self, inputs):
            return self.ic(inputs)

    net = Net()
    mutator = RandomMutator(net, seed=0)
    mutator.apply_decisions({"ic": torch.tensor([False, True])})
    a, b = torch.zeros(2), torch.ones(2)
    assert torch.equal(net([a, b]), b)
    assert torch.equal(net({"b": b, "a": a}), b)
    with pytest.raises(KeyError, match="no input for label 'b'"):
        net({"a": a})
    with pytest.raises(ValueError, match="expects 2 inputs, got 1"):
        net([a])


def test_calling_a_mutable_without_a_mutator_is_an_error():
    lc = LayerChoice([nn.ReLU()], key="op")
    with pytest.raises(RuntimeError, match=r"LayerChoice 'op' has no mutator.*RandomMutator"):
        lc(torch.zeros(1))
    with pytest.raises(RuntimeError, match="has no mutator"):
        InputChoice(n_candidates=1)([torch.zeros(1)])


def test_unkeyed_mutables_take_nni_counter_keys_readable_in_init():
    class Block(nn.Module):  # reads .key in __init__, as NNI's SPOS network does for its FLOPs table
        def __init__(self, table):
            super().__init__()
            self.op = LayerChoice(OrderedDict(small=Scale(1.0), big=Scale(2.0)))
            table[self.op.key] = [10, 20]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = {}
            self.blocks = nn.ModuleList([Block(self.table) for _ in range(2)])
            self.skip = InputChoice(n_candidates=2)
            self.named = LayerChoice([nn.ReLU()], key="explicit")  # an explicit key takes no number

    reset_global_mutable_counting()
    net = Net()
    assert list(net.table) == ["LayerChoice1", "LayerChoice2"]
    mutator = RandomMutator(net, seed=0)
    assert [m.key for m in mutator.mutables] == ["LayerChoice1", "LayerChoice2", "InputChoice3", "explicit"]
    mutator.reset()  # the keys never change: a FLOPs table built in __init__ still indexes the decisions
    assert all(key in net.table for key in mutator.status() if key.startswith("LayerChoice"))
    assert Net().blocks[0].op.key == "LayerChoice4"  # NNI's counter is process-wide ...
    reset_global_mutable_counting()  # ... until reset, as NNI's _reset_global_mutable_counting does
    assert Net().blocks[0].op.key == "LayerChoice1"


def test_a_factory_builds_the_same_keys_whatever_was_built_before():
    factory = ScopedFactory(TinyNet)
    first = [m.key for m in RandomMutator(factory()).undedup_mutables]
    for _ in range(3):
        LayerChoice([nn.ReLU()])  # the process builds other mutables in between
    again = [m.key for m in RandomMutator(factory()).undedup_mutables]
    assert first == again == ["Cell1", "LayerChoice2", "InputChoice3", "shared", "shared", "InputChoice4"]
    outer = LayerChoice([nn.ReLU()]).key  # the scope restores the process counter
    assert outer == f"LayerChoice{int(LayerChoice([nn.ReLU()]).key[len('LayerChoice'):]) - 1}"


def test_module_paths_and_first_build_counter_keys_are_aliases():
    for _ in range(7):
        LayerChoice([nn.ReLU()])  # the counter is not at 0: keys are LayerChoiceN with N > 7
    net = TinyNet()
    parsed = RandomMutator(net).parsed
    keys = {m.name: m.key for m in (net.cell0, net.cell0.op, net.cell0.inp, net.skip)}
    assert parsed.aliases["cell0.op"] == keys["cell0.op"] != "LayerChoice2"
    assert parsed.aliases["LayerChoice2"] == keys["cell0.op"]  # what NNI names it in a fresh process
    assert parsed.aliases["skip"] == parsed.aliases["InputChoice4"] == keys["skip"]
    assert "first" not in parsed.aliases  # explicit keys have no alias


def test_unkeyed_mutable_key_survives_pickling_and_deepcopy():
    import copy
    import pickle

    lc = LayerChoice([nn.ReLU(), nn.Tanh()])
    assert pickle.loads(pickle.dumps(lc)).key == copy.deepcopy(lc).key == lc.key


def test_mutables_sharing_a_key_share_one_decision():
    net = TinyNet()
    mutator = RandomMutator(net, seed=0)
    keys = [m.key for m in mutator.undedup_mutables]
    assert keys.count("shared") == 2
    assert "shared" in generate_search_space(net)
    for _ in range(5):
        mutator.reset()
        assert sum(mutator.status()["shared"]) == 1.0


def test_mutables_sharing_a_key_must_be_alike():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], key="k")
            self.b = LayerChoice([nn.ReLU()], key="k")

    with pytest.raises(MutatorBindingError, match=r"sharing key 'k' must be alike.*candidates"):
        RandomMutator(Net())


def test_nested_choices_are_an_error():
    inner = LayerChoice([nn.ReLU(), nn.Tanh()], key="inner")
    net = nn.Sequential(LayerChoice([nn.Sequential(inner), nn.Identity()], key="outer"))
    with pytest.raises(MutatorBindingError, match=r"nested choices.*'inner' sits inside LayerChoice 'outer'"):
        RandomMutator(net)


def test_choose_from_must_name_an_earlier_key_or_a_plain_label():
    class Net(nn.Module):
        def __init__(self, label: str):
            super().__init__()
            self.skip = InputChoice(choose_from=["stem", label], key="skip")
            self.later = LayerChoice([nn.ReLU()], key="later")

    RandomMutator(Net("some_label"))  # plain labels are fine
    with pytest.raises(MutatorBindingError, match=r"label 'later' of InputChoice 'skip'.*not defined before it"):
        RandomMutator(Net("later"))
    with pytest.raises(MutatorBindingError, match=r"label 'skip' of InputChoice 'skip'"):
        RandomMutator(Net("skip"))


def test_a_model_takes_one_mutator_until_detached():
    net = TinyNet()
    first = RandomMutator(net)
    with pytest.raises(MutatorBindingError, match="already bound to a RandomMutator"):
        RandomMutator(net)
    with pytest.raises(MutatorBindingError, match="already bound"):
        RandomMutator(nn.Sequential(net.cell0))  # a part of a bound model too
    first.detach()
    second = RandomMutator(net, seed=1)
    second.reset()
    net(torch.randn(2, 4))


def test_mutable_scope_calls_enter_and_exit_also_on_error():
    events = []

    class Recording(RandomMutator):
        def enter_mutable_scope(self, scope):
            events.append(("enter", scope.key))

        def exit_mutable_scope(self, scope):
            events.append(("exit", scope.key))

    class Boom(MutableScope):
        def forward(self, x):
            raise ZeroDivisionError("inside the scope")

    net = tiny_net()
    net.boom = Boom(key="boom")
    mutator = Recording(net, seed=0)
    mutator.reset()
    net(torch.randn(2, 4))
    assert events == [("enter", "Cell1"), ("exit", "Cell1")]
    with pytest.raises(ZeroDivisionError):
        net.boom(torch.zeros(1))
    assert events[-2:] == [("enter", "boom"), ("exit", "boom")]


def test_a_shared_module_is_parsed_once():
    op = LayerChoice([Scale(1.0), Scale(2.0)], key="op")
    net = nn.Sequential(op, op)
    mutator = RandomMutator(net)
    assert [m.key for m in mutator.undedup_mutables] == ["op"]


def test_factory_keys_agree_across_processes_whatever_each_built_before():
    import subprocess
    import sys

    script = (
        "import sys; from torch import nn; from raynas.nas import LayerChoice, RandomMutator;"
        "from raynas.nas.utils import ScopedFactory; from tests.nas.helpers import TinyNet;"
        "[LayerChoice([nn.ReLU()]) for _ in range(int(sys.argv[1]))];"
        "print(','.join(m.key for m in RandomMutator(ScopedFactory(TinyNet)()).undedup_mutables))"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True, text=True, check=True).stdout.strip()
        for n in (0, 7)
    }
    here = ",".join(m.key for m in RandomMutator(ScopedFactory(TinyNet)()).undedup_mutables)
    assert outputs == {here}
