"""The Python front door: raynas.create_experiment / resume_experiment / build_config, and the errors base."""

import subprocess
import sys

import pytest

import raynas
from raynas.experiment import ExperimentConfig


def test_import_raynas_loads_neither_torch_nor_ray():
    code = "import sys, raynas; raynas.RaynasError; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_build_config_takes_dotted_keys_sections_files_and_configs(tmp_path):
    config = raynas.build_config({"search": {"num_samples": 9}}, {"supernet.epochs": 3, "experiment": {"seed": 4}})
    assert (config.search.num_samples, config.supernet.epochs, config.supernet.seed) == (9, 3, 4)
    path = tmp_path / "cfg.yaml"
    path.write_text("supernet:\n  epochs: 2\n")
    assert raynas.build_config(path).supernet.epochs == 2
    assert raynas.build_config(config, {"supernet.epochs": 5}).search.num_samples == 9
    assert isinstance(raynas.build_config(), ExperimentConfig)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"supernet.bogus": 1}, r"unknown key 'bogus' in section 'supernet' \(valid keys: replicas"),
        ({"nosuch.key": 1}, r"unknown section 'nosuch'"),
        ({"supernet": 3}, r"override 'supernet' names a section, so its value must be a mapping, got 3"),
        ({"supernet.epochs": -1}, r"epochs"),
    ],
)
def test_bad_settings_raise_one_raynas_error(overrides, match):
    with pytest.raises(raynas.RaynasError, match=match):
        raynas.build_config(overrides=overrides)


def test_errors_share_one_base_and_keep_their_builtin():
    from raynas.nas import DecisionError, MutatorBindingError, SearchSpaceError
    from raynas.nas.darts import DartsConfigError
    from raynas.nas.enas import EnasConfigError
    from raynas.train.checkpoint import CheckpointError
    from searchers.base import CheckpointError as TunerCheckpointError

    for error in (SearchSpaceError, DecisionError, MutatorBindingError, DartsConfigError, EnasConfigError):
        assert issubclass(error, raynas.RaynasError)
    assert issubclass(DartsConfigError, raynas.ConfigError) and issubclass(DartsConfigError, ValueError)
    assert CheckpointError is TunerCheckpointError is raynas.CheckpointError


def test_create_refuses_an_existing_directory_and_run_checks_until(tmp_path):
    experiment = raynas.create_experiment(overrides={"experiment.storage": str(tmp_path)}, log=lambda _m: None)
    with pytest.raises(raynas.RaynasError, match=r"until must be one of space, supernet, search, retrain, got 'all'"):
        experiment.run(local=True, until="all")
    experiment.run(local=True, until="space")
    with pytest.raises(raynas.RaynasError, match="already exists; resume it"):
        raynas.create_experiment(overrides={"experiment.storage": str(tmp_path)})
    resumed = raynas.resume_experiment(experiment.dir.location, log=lambda _m: None)
    assert resumed.resumed and resumed.dir.done("space") and not resumed.dir.done("supernet")
