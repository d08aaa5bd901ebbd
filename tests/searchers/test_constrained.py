"""ConstrainedSearcher: over-budget proposals never become trials."""

from __future__ import annotations

import json

import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from searchers import RandomTuner
from searchers.constrained import ConstrainedSearcher, ConstraintError
from searchers.testing import mnist1d_search_space
from searchers.tune import TunerSearcher


def _searcher(constraint, **kw):
    inner = TunerSearcher(RandomTuner(seed=0), search_space=mnist1d_search_space(), metric="score", mode="max")
    return ConstrainedSearcher(inner, constraint=constraint, **kw)


def _no_conv7(config):
    bad = [k for k, v in config["arch"].items() if v["_value"] == "conv7"]
    return f"conv7 at {bad}" if bad else None


def test_rejected_proposals_are_never_suggested_and_are_counted():
    searcher = _searcher(_no_conv7)
    configs = [searcher.suggest(f"t{i}") for i in range(40)]
    assert all(_no_conv7(c) is None for c in configs)
    assert searcher.rejected > 0 and "conv7" in searcher.last_reason
    for i, config in enumerate(configs):
        searcher.on_trial_complete(f"t{i}", result={"score": 1.0, "config": config})
    assert not searcher._aliases  # every accepted trial's alias was resolved


def test_impossible_constraint_is_a_clear_error():
    searcher = _searcher(lambda config: "always too big", max_rejections=5)
    with pytest.raises(ConstraintError, match="5 proposals in a row broke the constraint.*always too big"):
        searcher.suggest("t0")


def test_save_and_restore_keep_the_wrapped_state(tmp_path):
    searcher = _searcher(_no_conv7)
    first = [searcher.suggest(f"t{i}") for i in range(5)]
    path = str(tmp_path / "ckpt")
    searcher.save(path)
    rejected_at_save = searcher.rejected
    expected = [searcher.suggest(f"u{i}") for i in range(5)]
    restored = _searcher(_no_conv7)
    restored.restore(path)
    assert restored.rejected == rejected_at_save
    assert [restored.suggest(f"u{i}") for i in range(5)] == expected
    assert json.dumps(first)  # suggestions are plain JSON-able configs


def test_composes_under_concurrency_limiter():
    limited = ConcurrencyLimiter(_searcher(_no_conv7), max_concurrent=2)
    a, b, c = (limited.suggest(f"t{i}") for i in range(3))
    assert a is not None and b is not None and c is None  # the limiter holds the third
    limited.on_trial_complete("t0", result={"score": 0.5})
    assert limited.suggest("t3") not in (None, Searcher.FINISHED)
