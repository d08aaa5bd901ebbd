import pytest

from raynas.experiment import ConfigError, ExperimentConfig, load_config
from raynas.train import SupernetConfig


def test_defaults_are_the_builtin_mnist1d_experiment():
    config = load_config()
    assert config.model.factory == "raynas.zoo.mnist1d:build_supernet"
    assert config.data.name == "mnist1d"
    assert isinstance(config.supernet, SupernetConfig)
    assert config.search.metric == "val_accuracy" and config.search.mode == "max"
    assert config.supernet.seed == config.experiment.seed


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "experiment: {name: exp1, seed: 3}\n"
        "supernet: {epochs: 5}\n"
        "search: {num_samples: 7, searcher_kwargs: {population_size: 4}}\n"
    )
    config = load_config(path, ["supernet.epochs=2", "search.searcher_kwargs.sample_size=2", "retrain.scheduler=asha"])
    assert config.experiment.name == "exp1" and config.experiment.seed == 3
    assert config.supernet.epochs == 2 and config.supernet.seed == 3
    assert config.search.num_samples == 7
    assert config.search.searcher_kwargs == {"population_size": 4, "sample_size": 2}
    assert config.retrain.scheduler == "asha"
    assert config.experiment_dir.endswith("/exp1")


def test_round_trip_through_a_dict():
    config = load_config(None, ["search.max_params=5000", "model.kwargs.x=1"])
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_explicit_supernet_seed_wins():
    assert load_config(None, ["experiment.seed=4", "supernet.seed=9"]).supernet.seed == 9


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["nosuch.key=1"], r"unknown section 'nosuch'.*valid: experiment, model, data, supernet, search, retrain"),
        (["search.nope=1"], r"unknown key 'nope' in section 'search' \(valid keys: searcher, searcher_kwargs"),
        (["supernet.nope=1"], r"unknown key 'nope' in section 'supernet' \(valid keys: replicas"),
        (["supernet.epochs=-1"], r"supernet.epochs must be >= 0, got -1"),
        (["search.mode=up"], r"search.mode must be one of max, min, got 'up'"),
        (["search.metric=acc"], r"search.metric must be val_loss or val_<name of a metric>, got 'acc'"),
        (["retrain.scheduler=pbt"], r"retrain.scheduler must be one of none, asha, got 'pbt'"),
        (["retrain.epochs=0"], r"retrain.epochs must be >= 1, got 0"),
        (["search.num_samples=1.5"], r"search.num_samples must be an integer, got 1.5"),
        (["model.factory=nocolon"], r"model.factory must be written 'package.module:name', got 'nocolon'"),
        (["data.name=cifar"], r"data.name must be a built-in \(mnist1d, digits, cifar10\)"),
        (["experiment.name=a/b"], r"experiment.name must be a plain folder name, got 'a/b'"),
        (["search.max_params=0"], r"search.max_params must be >= 1, got 0"),
        (["noequals"], r"--set takes section.key=value, got 'noequals'"),
        (["search=1"], r"--set takes section.key=value"),
    ],
)
def test_bad_values_name_the_key_and_the_valid_ones(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config(scalar)
    section = tmp_path / "section.yaml"
    section.write_text("search: 3\n")
    with pytest.raises(ConfigError, match="section 'search' must be a mapping"):
        load_config(section)


@pytest.mark.parametrize("section", ["experiment", "model", "data", "supernet", "search", "retrain"])
def test_unknown_keys_read_the_same_in_every_section(section):
    with pytest.raises(ConfigError, match=rf"^unknown key 'nope' in section '{section}' \(valid keys: \w+, \w+"):
        load_config(None, [f"{section}.nope=1"])
