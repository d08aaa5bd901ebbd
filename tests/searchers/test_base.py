"""searchers.base: the Tuner contract, its defaults and the shared validation helpers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from searchers import NoMoreTrialError, Tuner, check_optimize_mode, metric_value


def test_import_searchers_loads_neither_torch_nor_ray():
    code = "import searchers, searchers.testing, sys; assert 'torch' not in sys.modules; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metric_value_forms():
    assert metric_value(3) == 3.0
    assert metric_value(0.5) == 0.5
    assert metric_value({"default": 2, "other": 9}) == 2.0
    with pytest.raises(KeyError, match=r"'default', got keys \['acc'\]"):
        metric_value({"acc": 1.0})
    with pytest.raises(TypeError, match="real number"):
        metric_value("0.5")
    with pytest.raises(TypeError, match="real number"):
        metric_value(True)
    with pytest.raises(ValueError, match="NaN"):
        metric_value(float("nan"))


def test_optimize_mode_is_validated():
    assert check_optimize_mode("minimize") == "minimize"
    with pytest.raises(ValueError, match=r"optimize_mode must be one of 'maximize', 'minimize', got 'max'"):
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
