"""searchers.base: the Tuner contract, its defaults and the shared validation helpers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from searchers import NoMoreTrialError, Tuner, check_optimize_mode, metric_value
from searchers.errors import ConfigError, ConfigKeyError, ConfigTypeError


def test_import_searchers_loads_neither_torch_nor_ray():
    code = "import searchers, searchers.testing, sys; assert 'torch' not in sys.modules; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metric_value_forms():
    assert metric_value(3) == 3.0
    assert metric_value(0.5) == 0.5
    assert metric_value({"default": 2, "other": 9}) == 2.0
    with pytest.raises(ConfigKeyError, match=r"'default', got keys \['acc'\]"):
        metric_value({"acc": 1.0})
    with pytest.raises(ConfigTypeError, match="real number"):
        metric_value("0.5")
    with pytest.raises(ConfigTypeError, match="real number"):
        metric_value(True)
    with pytest.raises(ConfigError, match="NaN"):
        metric_value(float("nan"))


def test_optimize_mode_is_validated():
    assert check_optimize_mode("minimize") == "minimize"
    with pytest.raises(ConfigError, match=r"optimize_mode must be one of 'maximize', 'minimize', got 'max'"):
        check_optimize_mode("max")


class Counting(Tuner):
    """The smallest tuner: only the abstract methods."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def update_search_space(self, search_space):
        self.space = search_space

    def generate_parameters(self, parameter_id, **kwargs):
        if self.count >= self.limit:
            raise NoMoreTrialError("done")
        self.count += 1
        return {"k": {"_value": "a", "_idx": 0}}

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        pass

    def save_checkpoint(self):
        return {"count": self.count}

    def load_checkpoint(self, state):
        self.count = state["count"]


def test_abstract_methods_are_required():
    class Partial(Tuner):
        def generate_parameters(self, parameter_id, **kwargs):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Partial()
    # NNI's protocol (nni/tuner.py): generate_parameters or generate_multiple_parameters; checkpoints optional
    assert Tuner.__abstractmethods__ == {"update_search_space", "receive_trial_result"}

    class NoGenerate(Tuner):
        def update_search_space(self, search_space):
            pass

        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            pass

    with pytest.raises(TypeError, match="NoGenerate: NNI's tuner protocol needs generate_parameters"):
        NoGenerate()

    class MultipleOnly(NoGenerate):
        def generate_multiple_parameters(self, parameter_id_list, **kwargs):
            return [{"k": {"_value": "a", "_idx": 0}} for _ in parameter_id_list]

    tuner = MultipleOnly()
    assert tuner.generate_multiple_parameters([0, 1]) == [{"k": {"_value": "a", "_idx": 0}}] * 2
    with pytest.raises(NotImplementedError, match="MultipleOnly does not implement generate_parameters"):
        tuner.generate_parameters(2)


def test_checkpoints_are_optional_no_ops_as_in_nni(monkeypatch, tmp_path):
    class ThreeMethods(Tuner):
        def update_search_space(self, search_space):
            self.space = search_space

        def generate_parameters(self, parameter_id, **kwargs):
            return {}

        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            pass

    tuner = ThreeMethods()
    assert tuner.save_checkpoint() is None
    assert tuner.load_checkpoint() is None and tuner.load_checkpoint({"x": 1}) is None
    monkeypatch.delenv("NNI_CHECKPOINT_DIRECTORY", raising=False)
    assert tuner.get_checkpoint_path() is None
    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    assert tuner.get_checkpoint_path() == str(tmp_path)
    tuner._accept_customized_trials()
    assert tuner._accept_customized is True


def test_defaults_of_the_optional_hooks():
    tuner = Counting(limit=3)
    assert tuner.optimize_mode is None
    assert tuner.trial_end(0, success=False) is None
    assert tuner.import_data([{"parameter": {}, "value": 1.0}]) is None
    assert len(tuner.generate_multiple_parameters([0, 1])) == 2
    assert len(tuner.generate_multiple_parameters([2, 3, 4])) == 1  # stops at NoMoreTrialError
    assert tuner.generate_multiple_parameters([5]) == []


def test_a_user_tuner_on_the_public_arch_tuner_base_proposes_learns_and_checkpoints():
    import json

    from searchers import ArchTuner, canonical_hash, space_size
    from searchers.testing import SMALL_SPACE, check_parameters

    class BestFirst(ArchTuner):
        """Proposes random unseen architectures; remembers the best score through checkpoints."""

        def __init__(self, *, seed=None):
            super().__init__(seed=seed, optimize_mode="minimize")
            self.best = None

        def generate_parameters(self, parameter_id, **kwargs):
            self._need_space()
            arch = self._random_unseen()
            if arch is None:
                raise NoMoreTrialError("space exhausted")
            return self._propose(parameter_id, arch)

        def _on_result(self, parameter_id, arch, score):
            self.best = score if self.best is None else max(self.best, score)

        def _state(self):
            return {"best": self.best}

        def _load_state(self, state):
            self.best = state["best"]

    tuner = BestFirst(seed=0)
    tuner.update_search_space(SMALL_SPACE)
    proposals = [tuner.generate_parameters(i) for i in range(3)]
    for p in proposals:
        check_parameters(p, SMALL_SPACE)
    tuner.receive_trial_result(0, proposals[0], 2.0)
    tuner.receive_trial_result(1, proposals[1], 1.0)
    assert tuner.best == -1.0  # minimize: larger score is better
    clone = BestFirst()
    clone.load_checkpoint(json.loads(json.dumps(tuner.save_checkpoint())))
    assert clone.best == -1.0 and clone.generate_parameters(9) == tuner.generate_parameters(9)
    rest = [tuner.generate_parameters(10 + i) for i in range(space_size(SMALL_SPACE) - 4)]
    assert len({canonical_hash(p, SMALL_SPACE) for p in proposals + rest}) == space_size(SMALL_SPACE) - 1
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(99)


def test_the_shared_helpers_are_public_and_the_old_private_names_still_import():
    from searchers import base, evolution, space

    assert base._ArchTuner is base.ArchTuner
    assert (base._arch_json, base._arch_tuple, base._pid) == (base.arch_json, base.arch_tuple, base.hashable_id)
    assert base.hashable_id([1, [2, 3]]) == (1, (2, 3)) and base.arch_tuple(base.arch_json(((0,), (1, 2)))) == ((0,), (1, 2))
    assert evolution._positive_int is base.positive_int and space._parameter is space.choice_parameter
    assert space._choice_values is space.choice_values and base._calls_without_argument is base.calls_without_argument
    with pytest.raises(ConfigError, match="population_size must be >= 2, got 1"):
        base.positive_int("population_size", 1, minimum=2)


# what each module exported before the split into one-job modules (issue 11); every name must still import
OLD_EXPORTS = {
    "searchers.base": "OPTIMIZE_MODES ArchTuner arch_json arch_tuple calls_without_argument hashable_id positive_int "
    "NoMoreTrialError Tuner CheckpointError CallLog check_optimize_mode metric_value",
    "searchers.space": "LAYER_CHOICE INPUT_CHOICE SearchSpaceError Choice Selection Weights parse_search_space "
    "resolve_architecture to_parameters to_exported to_index_form from_index_form canonical_hash choice_size "
    "choice_parameter choice_values space_size sample_choice neighbour_choice sample_architecture "
    "mutate_architecture crossover_architectures enumerate_architectures",
    "searchers.tune": "ARCH_KEY TunerSearcher to_tune_space from_tune_config load_searcher SearcherLoadError",
}


@pytest.mark.parametrize("module", sorted(OLD_EXPORTS))
def test_every_name_still_imports_from_where_it_was(module):
    import importlib

    mod = importlib.import_module(module)
    old = OLD_EXPORTS[module].split()
    assert set(old) <= set(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    namespace: dict = {}
    exec(f"from {module} import *", namespace)  # the star import resolves the moved names too
    assert set(old) <= set(namespace)


def test_the_moved_modules_import_on_their_own_in_a_fresh_interpreter():
    for module in ("searchers.arch_tuner", "searchers.calllog", "searchers.space.sampling", "searchers.base"):
        code = f"import {module}, sys; assert 'torch' not in sys.modules and 'ray' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True)
