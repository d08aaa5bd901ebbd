"""The placement rules without a cluster: packing bundles onto nodes, and what is said."""

from __future__ import annotations

import pytest

from raynas.train.placement import ConfigError, Request, describe_nodes, fits, most_that_fit, wait_timeout_s


def test_bundles_pack_onto_nodes():
    two = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert fits([{"CPU": 0.5}] * 4, two)
    assert not fits([{"CPU": 0.5}] * 5, two)
    assert not fits([{"CPU": 2.0}], two)  # 2 CPUs in all, but no node holds one bundle of 2
    assert fits([{"CPU": 1.0, "GPU": 1.0}], [{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}])
    assert not fits([{"CPU": 1.0, "GPU": 1.0}], [{"CPU": 4.0, "GPU": 0.0}])
    assert fits([{"CPU": 0.3}] * 3 + [{"CPU": 0.9}], [{"CPU": 1.0}, {"CPU": 1.0}])  # largest first
    request = Request(what="supernet replicas", count=4, bundle={"CPU": 0.5, "GPU": 0})
    assert most_that_fit(request, [{"CPU": 1.0}]) == 2
    assert most_that_fit(request, []) == 0


def test_what_is_said():
    assert Request(what="supernet replicas", count=2, bundle={"CPU": 1.0, "GPU": 0.0}).describe() == (
        "2 supernet replicas x 1 CPU"
    )
    assert Request(what="search trial", count=1, bundle={"CPU": 0.5, "GPU": 0.25}).describe() == (
        "1 search trial x 0.5 CPU + 0.25 GPU"
    )
    assert describe_nodes([{"CPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}], ("CPU", "GPU")) == "2 nodes (1 CPU + 0 GPU; 2 CPU + 1 GPU)"
    assert describe_nodes([]) == "no alive node"


def test_the_timeout_setting(monkeypatch):
    monkeypatch.setenv("RAYNAS_PLACEMENT_TIMEOUT_S", "12.5")
    assert wait_timeout_s() == 12.5
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("RAYNAS_PLACEMENT_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match=f"RAYNAS_PLACEMENT_TIMEOUT_S must be a number of seconds >= 0, got '{bad}'"):
            wait_timeout_s()
