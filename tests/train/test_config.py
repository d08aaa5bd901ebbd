"""SupernetConfig: defaults, validation messages, dict round trip."""

from __future__ import annotations

import dataclasses

import pytest

from raynas.train import ConfigError, SupernetConfig


def test_defaults_are_valid_and_plain():
    config = SupernetConfig()
    data = config.to_dict()
    assert SupernetConfig.from_dict(data) == config
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in data.values())
    assert "_" not in "".join(k[0] for k in data)


def test_frozen_and_keyword_only():
    config = SupernetConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        SupernetConfig(2)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("optimizer", "rmsprop", ["supernet.optimizer", "'rmsprop'", "sgd, adam"]),
        ("sampling", "mixed", ["supernet.sampling", "shared, independent"]),
        ("algorithm", "dart", ["supernet.algorithm", "random, fair, spos, darts, enas, proxylessnas"]),
        ("precision", "fp8", ["supernet.precision", "fp32, bf16, fp16"]),
        ("replicas", 0, ["supernet.replicas", ">= 1", "0"]),
        ("replicas", 1.5, ["supernet.replicas", "integer", "1.5"]),
        ("lr", 0, ["supernet.lr", "> 0"]),
        ("momentum", 1.0, ["supernet.momentum", ">= 0.0 and < 1.0", "got 1.0"]),
        ("momentum", -0.5, ["supernet.momentum", ">= 0.0 and < 1.0", "got -0.5"]),
        ("lr", float("inf"), ["supernet.lr", "finite number", "inf"]),
        ("progress", "yes", ["supernet.progress", "true or false"]),
        ("device", "tpu", ["supernet.device", "auto, cpu, cuda"]),
        ("spos_lower", 0.8, ["spos_lower", "spos_upper"]),
        ("batch_size", True, ["supernet.batch_size", "integer"]),
        ("arch_lr", 0.0, ["supernet.arch_lr", "> 0"]),
        ("arch_weight_decay", -1.0, ["supernet.arch_weight_decay", ">= 0"]),
        ("darts_order", 3, ["supernet.darts_order", "1, 2", "3"]),
        ("darts_order", 1.0, ["supernet.darts_order", "1.0"]),
        ("enas_baseline_decay", 1.5, ["supernet.enas_baseline_decay", "<= 1.0"]),
        ("enas_lstm_size", 0, ["supernet.enas_lstm_size", ">= 1"]),
        ("enas_tanh_constant", 0, ["supernet.enas_tanh_constant", "> 0"]),
        ("proxylessnas_arch_every", 0, ["supernet.proxylessnas_arch_every", ">= 1"]),
    ],
)
def test_bad_values_name_key_value_and_rule(key, value, words):
    changes = {key: value}
    if key == "spos_lower":
        changes["spos_upper"] = 0.5
    with pytest.raises(ConfigError) as info:
        SupernetConfig(**changes)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(info.value, ValueError)


def test_from_dict_rejects_unknown_keys_listing_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'epoch' in section 'supernet' \(valid keys: replicas, epochs"):
        SupernetConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="mapping"):
        SupernetConfig.from_dict([("epochs", 3)])  # type: ignore[arg-type]
    assert SupernetConfig.from_dict(None) == SupernetConfig()


def test_replace_checks_like_a_fresh_config():
    config = SupernetConfig().replace(epochs=3, sampling="independent")
    assert (config.epochs, config.sampling) == (3, "independent")
    with pytest.raises(ConfigError, match="supernet.epochs"):
        config.replace(epochs=-1)
    with pytest.raises(ConfigError, match=r"unknown key 'nope' in section 'supernet' \(valid keys: replicas"):
        config.replace(nope=1)


def test_epochs_default_per_algorithm_unless_set():
    assert SupernetConfig().epochs is None and SupernetConfig().total_epochs == 100
    assert SupernetConfig(algorithm="darts").total_epochs == 20
    assert SupernetConfig(algorithm="enas").total_epochs == 100
    assert SupernetConfig(algorithm="proxylessnas").total_epochs == 120  # NNI's n_epochs
    assert SupernetConfig(algorithm="darts", epochs=7).total_epochs == 7
    assert SupernetConfig.from_dict(SupernetConfig(algorithm="darts").to_dict()).total_epochs == 20


_SPOS = {"algorithm": "spos", "flops_func": "get_candidate_flops", "flops_lb": 290e6, "flops_ub": 360e6}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"flops_func": "get flops"}, ["supernet.flops_func", "'package.module:function'", "'get flops"]),
        ({"flops_func": "a:b:c"}, ["supernet.flops_func", "'a:b:c'"]),
        ({"flops_func": 3}, ["supernet.flops_func", "got 3"]),
        ({"algorithm": "random"}, ["supernet.flops_func", "'spos'", "algorithm='random'", "'get_candidate_flops'"]),
        ({"flops_lb": None}, ["supernet.flops_lb", "must be a number", "None"]),
        ({"flops_ub": "360e6"}, ["supernet.flops_ub", "finite number", "'360e6'"]),
        ({"flops_ub": float("nan")}, ["supernet.flops_ub", "finite number", "nan"]),
        ({"flops_ub": 290e6}, ["supernet.flops_lb < supernet.flops_ub", "flops_lb=290000000.0", "flops_ub=29"]),
        ({"flops_bin_num": 0}, ["supernet.flops_bin_num", ">= 1", "0"]),
        ({"flops_sample_timeout": 2.5}, ["supernet.flops_sample_timeout", "integer", "2.5"]),
        ({"flops_func": None}, ["supernet.flops_lb", "supernet.flops_func, which is not set", "flops_lb=290000000.0"]),
    ],
)
def test_spos_flops_settings_name_key_value_and_rule(changes, words):
    with pytest.raises(ConfigError) as info:
        SupernetConfig(**{**_SPOS, **changes})
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_spos_flops_settings_take_nnis_defaults_and_both_spec_forms():
    config = SupernetConfig(**_SPOS)
    assert (config.flops_bin_num, config.flops_sample_timeout) == (7, 500)  # NNI's defaults
    assert SupernetConfig.from_dict(config.to_dict()) == config
    assert config.replace(flops_func="my_pkg.flops:count").flops_func == "my_pkg.flops:count"
    plain = SupernetConfig()
    assert (plain.flops_func, plain.flops_lb, plain.flops_ub) == (None, None, None)  # spos on profiled costs


def test_the_algorithm_rule_reads_the_registry_live(monkeypatch):
    from raynas.nas import algorithms

    with pytest.raises(ConfigError, match="supernet.algorithm must be one of random, fair, spos, darts, enas, proxylessnas, got 'mine'"):
        SupernetConfig(algorithm="mine")
    monkeypatch.setitem(algorithms.ALGORITHMS, "mine", algorithms.ALGORITHMS["random"])
    assert SupernetConfig(algorithm="mine").algorithm == "mine"
