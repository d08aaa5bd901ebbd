"""Classic NAS (NNI's nni.nas.pytorch.classic_nas) on Ray Tune, and NNI's trial API.

The trial script tests/nas/classic_nas_trial.py is written as for NNI v1.9 with only its imports changed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import raynas.nas.classic_nas as nni
from raynas.nas import InputChoice, LayerChoice
from raynas.nas.classic_launch import (
    ClassicNASError,
    generate_search_space_from_command,
    result_rows,
    run_classic_nas,
)
from raynas.nas.classic_nas import (
    NNI_GEN_SEARCH_SPACE,
    first_candidates,
    get_and_apply_next_architecture,
)
from raynas.nas.trial import trial_context, with_nni_trial
from searchers import RandomTuner, SearchSpaceError, to_exported

SCRIPT = Path(__file__).with_name("classic_nas_trial.py")
SCRIPT_SPACE = {
    "op": {"_type": "layer_choice", "_value": ["relu_fc", "tanh", "identity"]},
    "op2": {"_type": "layer_choice", "_value": ["0", "1"]},
    "skip": {"_type": "input_choice", "_value": {"candidates": ["", ""], "n_chosen": 1}},
}


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.op = LayerChoice(OrderedDict(double=Scale(2.0), triple=Scale(3.0)), key="op")
        self.inputs = InputChoice(choose_from=["a", "b", "c"], n_chosen=None, key="inputs")
        self.pair = InputChoice(choose_from=["a", "b", "c"], n_chosen=2, key="pair")

    def forward(self, x):
        y = self.op(x)
        many = self.inputs([x, 10 * x, 100 * x])
        two = self.pair([x, 10 * x, 100 * x])
        return y + (0 if many is None else many) + two


ONES = torch.ones(1, 2)


def _arch(op, inputs, pair):
    labels = ["a", "b", "c"]
    return {
        "op": {"_value": ["double", "triple"][op], "_idx": op},
        "inputs": {"_value": [labels[i] for i in inputs], "_idx": list(inputs)},
        "pair": {"_value": [labels[i] for i in pair], "_idx": list(pair)},
    }


# -- in the trial: standalone, trial context, dry run ---------------------------------------------------


def test_standalone_applies_the_first_candidates_with_nni_warning(caplog):
    model = Small()
    with caplog.at_level(logging.WARNING, logger="raynas.nas.classic_nas"):
        mutator = get_and_apply_next_architecture(model)
    assert "This is in standalone mode, the chosen are the first one(s)." in caplog.text
    # op: double; inputs (n_chosen null): all three; pair (n_chosen 2): the first two
    assert mutator.chosen_arch == _arch(0, [0, 1, 2], [0, 1])
    assert torch.equal(model(ONES), 2 * ONES + 111 * ONES + 11 * ONES)
    assert first_candidates(SCRIPT_SPACE) == {
        "op": {"_value": "relu_fc", "_idx": 0},
        "op2": {"_value": "0", "_idx": 0},
        "skip": {"_value": [""], "_idx": [0]},
    }


def test_standalone_trial_api_behaves_as_nni_standalone(caplog):
    with caplog.at_level(logging.INFO, logger="nni"):
        assert nni.get_next_parameter() == {}
        nni.report_intermediate_result(0.5)
        nni.report_final_result({"default": 0.7})
    assert "Requesting parameter without NNI framework, returning empty dict" in caplog.text
    assert "Intermediate result: 0.5" in caplog.text and "Final result: {'default': 0.7}" in caplog.text
    assert (nni.get_trial_id(), nni.get_experiment_id(), nni.get_sequence_id()) == ("STANDALONE", "STANDALONE", 0)


def test_in_a_trial_the_proposed_architecture_is_applied_and_results_are_reported():
    reported = []
    config = {"arch": _arch(1, [2], [0, 2]), "nni_parameter_id": 7}
    with trial_context(config, report=reported.append) as context:
        with pytest.raises(RuntimeError, match=r"get_next_parameter\(\) needs to be called before report_final_result"):
            nni.report_final_result(0.1)
        model = Small()
        mutator = get_and_apply_next_architecture(model)
        assert context.taken and nni.get_next_parameter() is None  # NNI: once per trial
        assert nni.get_current_parameter() == config["arch"] and nni.get_current_parameter("op")["_idx"] == 1
        assert nni.get_sequence_id() == 7
        assert mutator.chosen_arch == config["arch"]
        assert torch.equal(model(ONES), 3 * ONES + 100 * ONES + 101 * ONES)
        assert isinstance(model.op, LayerChoice) and len(model.op) == 2  # NNI's ClassicMutator keeps every candidate
        nni.report_intermediate_result(0.25)
        nni.report_final_result({"default": 0.5, "loss": 1})
        with pytest.raises(ValueError, match=r"dict without the trial's metric 'default' \(keys: \['acc'\]\)"):
            nni.report_final_result({"acc": 0.5})
        with pytest.raises(TypeError, match=r"got Tensor .* for 'default' \(a tensor: call .item\(\)\)"):
            nni.report_final_result(torch.tensor(0.5))
    assert reported == [
        {"default": 0.25, "nni_final": False, "nni_sequence": 0},
        {"default": 0.5, "loss": 1.0, "nni_final": True, "nni_sequence": 0},
    ]
    assert nni.get_trial_id() == "STANDALONE"  # the context is left


def test_a_trial_whose_parameters_were_taken_or_do_not_fit_fails_clearly():
    with trial_context({"arch": _arch(0, [], [0, 1])}, report=lambda r: None):
        nni.get_next_parameter()
        with pytest.raises(RuntimeError, match="get_next_parameter\\(\\) was already called in this trial"):
            get_and_apply_next_architecture(Small())
    bad = dict(_arch(0, [], [0, 1]), pair={"_value": ["a", "c"], "_idx": [0, 1]})  # NNI asserts they agree
    with trial_context({"arch": bad}, report=lambda r: None):
        with pytest.raises(SearchSpaceError, match="does not fit the model's search space: .*'pair'"):
            get_and_apply_next_architecture(Small())
    with trial_context({"arch": {k: v for k, v in bad.items() if k != "pair"}}, report=lambda r: None):
        with pytest.raises(SearchSpaceError, match="pair"):
            get_and_apply_next_architecture(Small())


def test_a_number_goes_under_the_experiment_metric_and_tune_configs_are_read_back():
    from searchers.tune import to_tune_space

    reported = []
    space = {"op": {"_type": "layer_choice", "_value": ["double", "triple"]}}
    with trial_context({"arch": {"op": "triple"}}, metric="acc", search_space=space, report=reported.append):
        assert nni.get_next_parameter() == {"op": {"_value": "triple", "_idx": 1}}
        nni.report_final_result(0.9)
    assert reported == [{"acc": 0.9, "nni_final": True, "nni_sequence": 0}]
    assert to_tune_space(space)  # the space form Tune's own searchers sample
    with trial_context({"lr": 0.1, "layers": 2}, report=reported.append):  # an HPO config: the config itself
        assert nni.get_next_parameter() == {"lr": 0.1, "layers": 2}


def test_with_nni_trial_runs_an_nni_main_without_arguments():
    seen = []

    def main():
        seen.append(nni.get_next_parameter())

    trainable = with_nni_trial(main)
    assert trainable.__name__ == "main"
    trainable({"arch": {"op": {"_value": "double", "_idx": 0}}, "nni_parameter_id": 0})
    assert seen == [{"op": {"_value": "double", "_idx": 0}}]


def test_nni_gen_search_space_writes_the_space_and_exits(monkeypatch, tmp_path):
    target = tmp_path / "space.json"
    monkeypatch.setenv(NNI_GEN_SEARCH_SPACE, str(target))
    with pytest.raises(SystemExit) as exit_info:
        get_and_apply_next_architecture(Small())
    assert exit_info.value.code == 0
    assert json.loads(target.read_text()) == {
        "inputs": {"_type": "input_choice", "_value": {"candidates": ["a", "b", "c"], "n_chosen": None}},
        "op": {"_type": "layer_choice", "_value": ["double", "triple"]},
        "pair": {"_type": "input_choice", "_value": {"candidates": ["a", "b", "c"], "n_chosen": 2}},
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.json"]


def test_the_script_run_standalone_picks_the_first_candidates(tmp_path):
    record = tmp_path / "record.jsonl"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--record", str(record), "--epochs", "2", "--steps", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "This is in standalone mode, the chosen are the first one(s)." in proc.stderr
    line = json.loads(record.read_text())
    assert line["trial_id"] == "STANDALONE" and line["parameters"] is None  # no get_next_parameter in NNI either
    assert line["ran"] == ["op.0", "op2.0"] and line["skip_taken"] == [0]


# -- ss-gen --trial-command (nnictl ss_gen) --------------------------------------------------------------


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "raynas.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_ss_gen_trial_command_writes_the_space_of_the_script(tmp_path):
    record = tmp_path / "record.jsonl"
    command = f"{sys.executable} {SCRIPT.name} --record {record}"
    result = run_cli("ss-gen", "--trial-command", command, "--trial-dir", str(SCRIPT.parent))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == SCRIPT_SPACE
    assert not record.exists(), "the dry run must exit before training"
    out = tmp_path / "space.json"
    result = run_cli("ss-gen", "-t", f"{sys.executable} {SCRIPT}", "-f", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == SCRIPT_SPACE and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.json"]


def test_ss_gen_trial_command_errors_are_one_line(tmp_path):
    (tmp_path / "plain.py").write_text("print('no mutables here')\n")
    (tmp_path / "broken.py").write_text("raise SystemExit('cannot load data')\n")
    cases = [
        (["ss-gen", "m:f", "-t", "true"], "either FACTORY (module:function) or --trial-command"),
        (["ss-gen", "-t", f"{sys.executable} plain.py"], "exited without writing the search space: does the script"),
        (["ss-gen", "-t", f"{sys.executable} broken.py"], "exited with code 1: cannot load data"),
    ]
    for args, message in cases:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("raynas: error:")]
        assert len(error_lines) == 1 and message in error_lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr.replace("no mutables here", "")
    with pytest.raises(FileNotFoundError, match="trial directory .*missing' does not exist"):
        generate_search_space_from_command("true", trial_dir=tmp_path / "missing")
    with pytest.raises(ClassicNASError, match="cannot run trial command"):
        generate_search_space_from_command([str(tmp_path / "no-such-program")], trial_dir=tmp_path)


# -- Ray Tune runs ---------------------------------------------------------------------------------------


class RecordingRandomTuner(RandomTuner):
    """raynas' RandomTuner, noting every result it receives."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.received = []

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.received.append((parameter_id, parameters, value))
        super().receive_trial_result(parameter_id, parameters, value, **kwargs)


@pytest.mark.slow
def test_the_nni_script_runs_as_tune_trials_searched_by_a_raynas_tuner(ray_local, tmp_path):
    record = tmp_path / "record.jsonl"
    tuner = RecordingRandomTuner(seed=3)
    results = run_classic_nas(
        SCRIPT,
        ["--record", str(record), "--epochs", "3", "--steps", "3"],
        searcher=tuner,
        num_samples=4,
        max_concurrent=2,
        storage_path=str(tmp_path / "runs"),
        name="tiny",
        trial_dir=tmp_path,
    )
    assert len(results) == 4 and not results.errors
    lines = {line["trial_id"]: line for line in map(json.loads, record.read_text().splitlines())}
    assert len(lines) == 4
    received = {pid: (params, value) for pid, params, value in tuner.received}
    assert sorted(received) == [0, 1, 2, 3]
    for result in results:
        proposed, pid = result.config["arch"], result.config["nni_parameter_id"]
        line = lines[result.metrics["trial_id"]]
        # the trial got the architecture the searcher proposed for it, under its parameter id ...
        assert line["parameters"] == proposed and line["sequence"] == pid
        # ... and its model ran exactly those candidates
        assert line["ran"] == [f"op.{proposed['op']['_idx']}", f"op2.{proposed['op2']['_idx']}"]
        assert line["skip_taken"] == proposed["skip"]["_idx"]
        # intermediate results then the final one reached Tune; the final one reached the tuner
        history = result.metrics_dataframe
        assert list(history["nni_final"]) == [False, False, True]
        assert result.metrics["default"] == line["final"]
        assert received[pid] == (proposed, line["final"])
    rows = result_rows(results, SCRIPT_SPACE)
    assert [r["default"] for r in rows] == sorted((r["default"] for r in rows), reverse=True)
    by_sequence = {r.config["nni_parameter_id"]: r.config["arch"] for r in results}
    for row in rows:
        assert row["status"] == "DONE" and row["arch"] == to_exported(by_sequence[row["sequence"]], SCRIPT_SPACE)


@pytest.mark.slow
def test_classic_nas_cli_with_evolution_tuner(ray_local, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    record = tmp_path / "record.jsonl"
    result = run_cli(
        "classic-nas", str(SCRIPT), "--searcher", "searchers:EvolutionTuner",
        "--searcher-kwargs", '{"population_size": 2, "num_select": 1, "num_mutation": 1, "num_crossover": 1}',
        "--num-samples", "3", "--max-concurrent", "2", "--seed", "0", "--storage-path", str(tmp_path / "runs"),
        "--name", "cli", "--address", address, "--verbose", "0", "--trial-dir", str(tmp_path),
        "--", "--record", str(record), "--epochs", "2", "--steps", "2",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "classic NAS: 3 trials, by default (max):" in out
    assert "best architecture: {" in out and f"results: {tmp_path / 'runs' / 'cli'}" in out
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(line["sequence"] for line in lines) == [0, 1, 2]
    best = max(lines, key=lambda line: line["final"])
    assert f"{best['final']:.4f}" in out.split("classic NAS:")[1].splitlines()[2]  # the first row is the best


def test_run_classic_nas_rejects_bad_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="trial script"):
        run_classic_nas(tmp_path / "missing.py", search_space=SCRIPT_SPACE)
    with pytest.raises(ClassicNASError, match="mode must be one of max, min, got 'maximize'"):
        run_classic_nas(SCRIPT, search_space=SCRIPT_SPACE, mode="maximize")
    with pytest.raises(ClassicNASError, match="num_samples must be >= 1, got 0"):
        run_classic_nas(SCRIPT, search_space=SCRIPT_SPACE, num_samples=0)
    with pytest.raises(SearchSpaceError):
        run_classic_nas(SCRIPT, search_space={"op": {"_type": "layer_choice", "_value": []}})
    with pytest.raises(ClassicNASError, match="searcher_kwargs apply to a searcher given by import path"):
        run_classic_nas(SCRIPT, search_space=SCRIPT_SPACE, searcher=RandomTuner(), searcher_kwargs={"seed": 1})


def nni_style_trainable(config):
    """A user's own Tune trainable whose body is NNI classic-NAS code."""
    model = Small()
    get_and_apply_next_architecture(model)
    nni.report_final_result(float(model(ONES).sum()))


@pytest.mark.slow
def test_an_own_tune_trainable_runs_nni_code_when_wrapped_and_fails_clearly_when_not(ray_local, tmp_path):
    from ray import tune

    from raynas.nas import generate_search_space
    from searchers.tune import TunerSearcher

    space = generate_search_space(Small())

    def fit(trainable, samples, name):
        searcher = TunerSearcher(RandomTuner(seed=1), search_space=space, metric="default", mode="max")
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0),
        ).fit()

    results = fit(with_nni_trial(nni_style_trainable), 3, "wrapped")
    assert len(results) == 3 and not results.errors
    for result in results:
        reported = []
        with trial_context(result.config, report=reported.append):
            nni_style_trainable(result.config)  # the same architecture, here
        assert result.metrics["default"] == reported[0]["default"]
    unwrapped = fit(nni_style_trainable, 1, "unwrapped")
    assert len(unwrapped.errors) == 1
    assert "wrap the trainable with raynas.nas.trial.with_nni_trial(fn)" in str(unwrapped.errors[0])


def test_the_readme_trial_script_runs_standalone(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Classic NAS"):]
    script = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "trial.py").write_text(script)
    proc = subprocess.run([sys.executable, "trial.py"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "This is in standalone mode, the chosen are the first one(s)." in proc.stderr
    assert generate_search_space_from_command([sys.executable, "trial.py"], trial_dir=tmp_path) == {
        "op": {"_type": "layer_choice", "_value": ["0", "1"]},
        "skip": {"_type": "input_choice", "_value": {"candidates": ["", ""], "n_chosen": 1}},
    }
