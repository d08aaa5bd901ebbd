"""Every error searchers raises for bad user input is a RaynasError (and still the built-in it was)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from ray.tune.search import Searcher

import searchers
from searchers import (
    CallLog,
    EvolutionTuner,
    NoMoreTrialError,
    RandomTuner,
    RegularizedEvolutionTuner,
    Tuner,
    check_optimize_mode,
    metric_value,
    mutate_architecture,
    parse_search_space,
    resolve_architecture,
)
from searchers.base import positive_int
from searchers.constrained import ConstrainedSearcher
from searchers.errors import (
    CheckpointError,
    ConfigError,
    ConfigKeyError,
    ConfigTypeError,
    ConstraintError,
    RaynasError,
    SearcherLoadError,
    SearchSpaceError,
)
from searchers.imports import import_object
from searchers.testing import SMALL_SPACE, mnist1d_search_space
from searchers.tune import TunerSearcher, from_tune_config, load_searcher, to_tune_space

SPACE = mnist1d_search_space()


class OneKeywordSearcher(Searcher):
    """A Tune searcher loaded by import path below (this module is importable as tests.searchers.test_errors)."""

    def __init__(self, space=None, metric=None, mode=None):
        super().__init__(metric=metric, mode=mode)

    def suggest(self, trial_id):
        return None


def _searcher(**kwargs):
    kwargs = {"search_space": SPACE, "metric": "score", "mode": "max", **kwargs}
    return TunerSearcher(RandomTuner(seed=0), **kwargs)


def _with_space(tuner):
    tuner.update_search_space(SMALL_SPACE)
    return tuner


def _load(path, **kwargs):
    return load_searcher(path, search_space=SPACE, metric="score", mode=kwargs.pop("mode", "max"), **kwargs)


# (id, call, the raynas error, the built-in it must still be)
BAD_INPUTS = [
    ("optimize_mode", lambda: check_optimize_mode("max"), ConfigError, ValueError),
    ("metric dict without default", lambda: metric_value({"acc": 1}), ConfigKeyError, KeyError),
    ("metric not a number", lambda: metric_value("0.5"), ConfigTypeError, TypeError),
    ("metric NaN", lambda: metric_value(float("nan")), ConfigError, ValueError),
    ("positive_int type", lambda: positive_int("n", 1.5), ConfigTypeError, TypeError),
    ("positive_int bound", lambda: positive_int("n", 0), ConfigError, ValueError),
    ("seed type", lambda: RandomTuner(seed="x"), ConfigTypeError, TypeError),
    ("seed bound", lambda: RandomTuner(seed=-1), ConfigError, ValueError),
    ("constraint", lambda: EvolutionTuner(optimize_mode="maximize", constraint=3), ConfigTypeError, TypeError),
    ("evolution counts", lambda: EvolutionTuner(optimize_mode="maximize", num_mutation=49), ConfigError, ValueError),
    ("mutation_prob", lambda: EvolutionTuner(optimize_mode="maximize", mutation_prob=-1), ConfigError, ValueError),
    (
        "sample_size",
        lambda: RegularizedEvolutionTuner(optimize_mode="maximize", population_size=2, sample_size=3),
        ConfigError,
        ValueError,
    ),
    ("no search space yet", lambda: RandomTuner(seed=0).generate_parameters(0), SearchSpaceError, ValueError),
    ("import record type", lambda: _with_space(RandomTuner()).import_data([3]), ConfigTypeError, TypeError),
    ("import record keys", lambda: _with_space(RandomTuner()).import_data([{"value": 1}]), ConfigKeyError, KeyError),
    ("foreign checkpoint", lambda: RandomTuner().load_checkpoint({"tuner": "X"}), CheckpointError, ValueError),
    ("call log record", lambda: CallLog([["teleport"]]), CheckpointError, ValueError),
    ("space type", lambda: parse_search_space([]), SearchSpaceError, ValueError),
    ("space _type", lambda: parse_search_space({"k": {"_type": "bad", "_value": ["a"]}}), SearchSpaceError, ValueError),
    ("architecture key", lambda: resolve_architecture({"nope": 0}, SMALL_SPACE), SearchSpaceError, ValueError),
    ("candidate", lambda: resolve_architecture({"op": "z", "free": [], "one": 0}, SMALL_SPACE), SearchSpaceError, ValueError),
    ("mutation prob", lambda: mutate_architecture({"op": 0, "free": [], "one": 0}, SMALL_SPACE, None, prob=2), SearchSpaceError, ValueError),
    ("tuner type", lambda: TunerSearcher({}), ConfigTypeError, TypeError),
    ("mode", lambda: _searcher(mode="maximize"), ConfigError, ValueError),
    ("metric type", lambda: _searcher(metric=3), ConfigTypeError, TypeError),
    ("points type", lambda: _searcher(points_to_evaluate="op0"), ConfigTypeError, TypeError),
    ("points without space", lambda: _searcher(search_space=None, points_to_evaluate=[{}]), ConfigError, ValueError),
    ("parameter_id_key", lambda: _searcher(parameter_id_key="arch"), ConfigError, ValueError),
    ("point breaks the space", lambda: _searcher(points_to_evaluate=[{"op0": "nope"}]), SearchSpaceError, ValueError),
    ("arch in param_space", lambda: _searcher().set_search_properties("s", "max", {"arch": {}}), ConfigError, ValueError),
    ("suggest without space", lambda: _searcher(search_space=None).suggest("t"), ConfigError, ValueError),
    ("suggest without metric", lambda: _searcher(metric=None).suggest("t"), ConfigError, ValueError),
    ("evaluated point without space", lambda: _searcher(search_space=None).add_evaluated_point({}, 1.0), ConfigError, ValueError),
    ("state of another tuner", lambda: _searcher().set_state({"tuner_class": "x:Y"}), CheckpointError, ValueError),
    ("tune space too large", lambda: to_tune_space({"k": {"_type": "input_choice", "_value": {"candidates": [str(i) for i in range(40)], "n_chosen": 20}}}), SearchSpaceError, ValueError),
    ("tune config", lambda: from_tune_config({"arch": {"nope": 1}}, SPACE), SearchSpaceError, ValueError),
    ("searcher path", lambda: _load("no_colon"), SearcherLoadError, ValueError),
    ("searcher module", lambda: _load("no_such_module_xyz:T"), SearcherLoadError, ValueError),
    ("searcher name", lambda: _load("searchers:Nope"), SearcherLoadError, ValueError),
    ("searcher kind", lambda: _load("json:JSONDecoder"), SearcherLoadError, ValueError),
    ("searcher mode", lambda: _load("searchers:RandomTuner", mode="maximize"), ConfigError, ValueError),
    ("tuner keyword", lambda: _load("searchers:RandomTuner", population=5), ConfigTypeError, TypeError),
    ("searcher keyword", lambda: _load(f"{__name__}:OneKeywordSearcher", seed=1, depth=2), ConfigTypeError, TypeError),
    ("searcher space keyword", lambda: _load(f"{__name__}:OneKeywordSearcher", space={}), ConfigError, ValueError),
    ("factory path", lambda: import_object("json"), ConfigError, ValueError),
    ("constrained searcher", lambda: ConstrainedSearcher(RandomTuner(), constraint=len), ConfigTypeError, TypeError),
    ("constraint callable", lambda: ConstrainedSearcher(_searcher(), constraint=3), ConfigTypeError, TypeError),
    ("max_rejections", lambda: ConstrainedSearcher(_searcher(), constraint=len, max_rejections=0), ConfigError, ValueError),
    ("constraint never met", lambda: ConstrainedSearcher(_searcher(), constraint=lambda c: "no", max_rejections=2).suggest("t"), ConstraintError, RuntimeError),
]  # fmt: skip


@pytest.mark.parametrize("call, error, builtin", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_a_raynas_error_that_is_still_the_builtin(call, error, builtin):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, RaynasError) and isinstance(info.value, builtin)
    message = str(info.value)
    assert message == info.value.args[0] and "\n" not in message, message  # one line, as written (a KeyError unquoted)


def test_no_builtin_error_is_raised_for_user_input_in_searchers():
    """A source scan: every ``raise ValueError/TypeError/KeyError`` in searchers/ is a raynas error, except
    the tuner-class check below (a bug in a tuner's code, raised as abc raises its own)."""
    allowed = {("base.py", "__new__")}  # Tuner.__new__: a tuner class without generate_parameters
    found = []
    root = pathlib.Path(searchers.__file__).parent
    paths = sorted(root.rglob("*.py"))
    assert {"base.py", "space/choice.py", "tune/searcher.py"} <= {p.relative_to(root).as_posix() for p in paths}
    for path in paths:
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                exc = node.exc if isinstance(node, ast.Raise) else None
                name = exc.func if isinstance(exc, ast.Call) else exc
                if isinstance(name, ast.Name) and name.id in ("ValueError", "TypeError", "KeyError"):
                    found.append((path.relative_to(root).as_posix(), func.name))
    assert set(found) == allowed, found


def test_the_protocol_signal_and_class_bugs_are_not_user_errors():
    assert not issubclass(NoMoreTrialError, RaynasError)  # caught by name, as NNI's; see its docstring

    class NoGenerate(Tuner):
        def update_search_space(self, search_space):
            pass

        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            pass

    with pytest.raises(TypeError) as info:
        NoGenerate()
    assert not isinstance(info.value, RaynasError)


def test_a_key_error_prints_its_plain_message():
    error = ConfigKeyError("a metric dict must hold the value under 'default', got keys ['acc']")
    assert str(error) == "a metric dict must hold the value under 'default', got keys ['acc']"
    assert isinstance(error, KeyError) and isinstance(error, ConfigError)


def test_every_error_class_is_exported_where_it_was():
    from searchers import constrained, space, tune

    assert space.SearchSpaceError is searchers.SearchSpaceError is SearchSpaceError
    assert tune.SearcherLoadError is SearcherLoadError and constrained.ConstraintError is ConstraintError
    assert searchers.CheckpointError is CheckpointError
