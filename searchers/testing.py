"""A pytest conformance suite for NNI-protocol tuners, plus a synthetic benchmark objective.

Run it against any tuner, shipped or your own, by subclassing :class:`TunerConformance` in a test
module and providing a ``tuner_factory`` fixture that builds a fresh tuner from a seed::

    import pytest
    from searchers.testing import TunerConformance

    class TestMyTuner(TunerConformance):
        @pytest.fixture
        def tuner_factory(self):
            return lambda seed: MyTuner(seed=seed)

The fixture may be parametrized to cover several tuners. Class attributes state what a tuner
promises: ``no_duplicates`` (never proposes an architecture twice) and ``exhausts_space``
(raises ``NoMoreTrialError`` once every architecture of a small space has been proposed).

The suite checks: exact parameters (``searchers.space.to_parameters`` form, validated with
``Choice.resolve(value, exact=True)``) on varied spaces (layer choices, input choices with
``n_chosen`` null / 0 / 1 / k / all, empty and repeated labels, one-candidate keys);
``generate_multiple_parameters``; determinism under a seed; no repeats where promised; a JSON
checkpoint round trip with trials in flight (for a tuner that keeps no checkpoint, as NNI allows:
a replay of its calls into a fresh tuner, as :class:`searchers.tune.TunerSearcher` restores it);
pickling; asynchronous use (out-of-order results,
failed trials, dict values, foreign and imported results) without stalling; errors on a bad space.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from searchers.base import NoMoreTrialError, Tuner
from searchers.calllog import CallLog
from searchers.space import canonical_hash, choice_parameter, parse_search_space, space_size

__all__ = [
    "SPACES",
    "SMALL_SPACE",
    "TunerConformance",
    "check_parameters",
    "drive",
    "mnist1d_search_space",
    "synthetic_objective",
    "best_found",
]

MNIST1D_OPS = ("conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity")


def mnist1d_search_space() -> dict:
    """The built-in ``mnist1d`` search space (``raynas.zoo.mnist1d``) as nnictl JSON, sorted keys."""
    space: dict = {f"op{i}": {"_type": "layer_choice", "_value": list(MNIST1D_OPS)} for i in range(4)}
    names = ["stem", "op0", "op1"]
    for i in (1, 2, 3):
        space[f"skip{i}"] = {"_type": "input_choice", "_value": {"candidates": names[:i], "n_chosen": None}}
    return {k: space[k] for k in sorted(space)}


_TABLES = np.random.default_rng(20240611)
_UNARY = _TABLES.normal(0.0, 1.0, (4, 6))  # op{i} choosing candidate j
_PAIR = _TABLES.normal(0.0, 0.7, (3, 6, 6))  # op{i} and op{i+1} together
_SKIP = _TABLES.normal(0.0, 0.6, (3, 3, 6))  # skip{i} taking candidate c, given op{i}


def synthetic_objective(parameters: Mapping[str, Any]) -> float:
    """A deterministic score (higher is better) of an ``mnist1d`` architecture, for benchmarks.

    The score sums a fixed (seeded) table of per-key terms, of pairwise terms between
    neighbouring blocks and of skip terms that depend on the receiving block's op, so it rewards
    combinations, not independent choices. Its maximum over the space is about 6.08; the 99.9th
    percentile is about 4.53.

    Args:
        parameters: ``{key: {"_value", "_idx"}}`` over :func:`mnist1d_search_space`.

    Returns:
        The score.
    """
    ops = [parameters[f"op{i}"]["_idx"] for i in range(4)]
    score = sum(_UNARY[i, o] for i, o in enumerate(ops))
    score += sum(_PAIR[i, ops[i], ops[i + 1]] for i in range(3))
    for i in (1, 2, 3):
        score += sum(_SKIP[i - 1, c, ops[i]] for c in parameters[f"skip{i}"]["_idx"])
    return float(score)


# -- spaces the suite runs on ----------------------------------------------------------------

SPACES: dict[str, dict] = {
    "layers": {
        "a": {"_type": "layer_choice", "_value": ["x", "y", "z"]},
        "b": {"_type": "layer_choice", "_value": ["p", "q"]},
    },
    "inputs": {
        "free": {"_type": "input_choice", "_value": {"candidates": ["s", "t", "u"], "n_chosen": None}},
        "none": {"_type": "input_choice", "_value": {"candidates": ["s", "t"], "n_chosen": 0}},
        "one": {"_type": "input_choice", "_value": {"candidates": ["s", "t", "u"], "n_chosen": 1}},
        "two": {"_type": "input_choice", "_value": {"candidates": ["s", "t", "u", "v"], "n_chosen": 2}},
        "all": {"_type": "input_choice", "_value": {"candidates": ["s", "t"], "n_chosen": 2}},
        "op": {"_type": "layer_choice", "_value": ["c3", "c5"]},
    },
    "labels": {
        "blank": {"_type": "input_choice", "_value": {"candidates": ["", ""], "n_chosen": 1}},
        "blank_free": {"_type": "input_choice", "_value": {"candidates": ["", "", "a"], "n_chosen": None}},
        "repeated": {"_type": "layer_choice", "_value": ["conv", "conv", "pool"]},
        "single": {"_type": "layer_choice", "_value": ["only"]},
        "solo_input": {"_type": "input_choice", "_value": {"candidates": [""], "n_chosen": None}},
    },
    "mnist1d": mnist1d_search_space(),
}

SMALL_SPACE: dict = {  # 3 * 4 * 2 = 24 architectures
    "op": {"_type": "layer_choice", "_value": ["a", "b", "c"]},
    "free": {"_type": "input_choice", "_value": {"candidates": ["s", "t"], "n_chosen": None}},
    "one": {"_type": "input_choice", "_value": {"candidates": ["", ""], "n_chosen": 1}},
}


def check_parameters(parameters: Any, search_space: Mapping[str, Any]) -> None:
    """Fail (AssertionError) unless ``parameters`` are exact tuner parameters for the space.

    Exact means: a dict with every key of the space and no other; each value a dict with exactly
    ``"_value"`` and ``"_idx"``, accepted by ``Choice.resolve(value, exact=True)`` and written
    exactly as :func:`searchers.space.to_parameters` writes it; the whole JSON round-trips.

    Args:
        parameters: what ``generate_parameters`` returned.
        search_space: the space.
    """
    choices = parse_search_space(search_space)
    assert isinstance(parameters, dict), f"parameters must be a dict, got {type(parameters).__name__}"
    assert set(parameters) == set(choices), f"keys {sorted(parameters)} != space keys {sorted(choices)}"
    for key, choice in choices.items():
        value = parameters[key]
        assert isinstance(value, dict) and set(value) == {"_value", "_idx"}, (
            f"{key}: a parameter is {{'_value', '_idx'}}, got {value!r}"
        )
        resolved = choice.resolve(value, exact=True)
        expected = choice_parameter(choice, resolved)
        assert value == expected and type(value["_idx"]) is type(expected["_idx"]), (
            f"{key}: got {value!r}, to_parameters writes {expected!r}"
        )
    assert json.loads(json.dumps(parameters)) == parameters, "parameters must be plain JSON"


def _toy_value(parameters: Mapping[str, Any]) -> float:
    """A deterministic value for any parameters (used by the suite to feed results)."""
    total = 0.0
    for n, key in enumerate(sorted(parameters)):
        idx = parameters[key]["_idx"]
        for i in [idx] if isinstance(idx, int) else idx:
            total += ((n + 1) * 7 + i * 13) % 10 / 10.0
    return total


# drive: over 60 lines by its docstring (the arguments of a test driver); the code is one loop of ~45 lines
def drive(
    tuner: Tuner,
    search_space: Mapping[str, Any] | None,
    n: int,
    *,
    concurrency: int = 1,
    seed: int = 0,
    fail_every: int = 0,
    dict_every: int = 0,
    objective: Callable[[Mapping[str, Any]], float] = _toy_value,
    start_id: int = 0,
    pending: list | None = None,
    log: CallLog | None = None,
) -> tuple[list[dict], list]:
    """Run a tuner like an asynchronous driver: up to ``concurrency`` trials in flight.

    Results complete in a seeded random order. ``NoMoreTrialError`` with trials in flight waits for
    one to complete; with none in flight it ends the drive (the tuner is done).

    Args:
        tuner: the tuner.
        search_space: passed to ``update_search_space`` first, unless ``None``.
        n: proposals wanted.
        concurrency: trials in flight at most.
        seed: seed of the completion order.
        fail_every: every k-th completion fails (``trial_end(success=False)``, no result); 0: never.
        dict_every: every k-th result is sent as ``{"default": value}``; 0: never.
        objective: the value of a parameter set.
        start_id: the first parameter id.
        pending: trials in flight ``[(id, parameters)]`` carried over from an earlier drive; the
            list is updated in place. ``None``: a fresh list, and every trial is completed at the
            end.
        log: when given, every call made to the tuner after ``update_search_space`` is recorded
            in it.

    Returns:
        ``(proposals, pending)``: the parameters proposed, in order, and the trials still in
        flight (empty unless ``pending`` was given).
    """
    if search_space is not None:
        tuner.update_search_space(search_space)
    rng = np.random.default_rng(seed)
    drain = pending is None
    pending = [] if pending is None else pending
    proposals: list[dict] = []
    done = 0
    next_id = start_id

    def complete_one() -> None:
        nonlocal done
        pid, params = pending.pop(int(rng.integers(len(pending))))
        done += 1
        if fail_every and done % fail_every == 0:
            tuner.trial_end(pid, False)
            if log is not None:
                log.ended(pid, False)
            return
        value: Any = objective(params)
        if dict_every and done % dict_every == 0:
            value = {"default": value, "extra": 1.0}
        tuner.receive_trial_result(pid, params, value)
        tuner.trial_end(pid, True)
        if log is not None:
            log.received(pid, params, value)
            log.ended(pid, True)

    while len(proposals) < n:
        if len(pending) >= concurrency:
            complete_one()
            continue
        try:
            params = tuner.generate_parameters(next_id)
        except NoMoreTrialError:
            if not pending:
                break
            complete_one()
            continue
        if log is not None:
            log.generated(next_id, params)
        pending.append((next_id, params))
        proposals.append(params)
        next_id += 1
    while drain and pending:
        complete_one()
    return proposals, pending


def best_found(
    tuner: Tuner,
    *,
    budget: int,
    concurrency: int = 2,
    seed: int = 0,
    objective: Callable[[Mapping[str, Any]], float] = synthetic_objective,
    search_space: Mapping[str, Any] | None = None,
) -> float:
    """The best objective value a tuner finds within ``budget`` trials (asynchronous drive).

    Args:
        tuner: a tuner that maximizes.
        budget: trials.
        concurrency: trials in flight.
        seed: seed of the completion order.
        objective: the value of a parameter set.
        search_space: the space (default: :func:`mnist1d_search_space`).

    Returns:
        The maximum objective value over the proposals.
    """
    space = mnist1d_search_space() if search_space is None else search_space
    proposals, _ = drive(tuner, space, budget, concurrency=concurrency, seed=seed, objective=objective)
    return max(objective(p) for p in proposals)


def _hashes(proposals: list[dict], space: Mapping[str, Any]) -> list[str]:
    return [canonical_hash(p, space) for p in proposals]


class TunerConformance:
    """Subclass in a test module and provide a ``tuner_factory`` fixture (``seed -> Tuner``)."""

    no_duplicates: bool = True
    exhausts_space: bool = True

    @pytest.mark.parametrize("space_name", sorted(SPACES))
    def test_parameters_are_exact_on_varied_spaces(self, tuner_factory, space_name):
        space = SPACES[space_name]
        proposals, _ = drive(tuner_factory(0), space, 40, concurrency=3, fail_every=5)
        assert proposals, "the tuner proposed nothing"
        for params in proposals:
            check_parameters(params, space)
        if space_size(space) >= 40:
            assert len(proposals) == 40, f"stopped after {len(proposals)} of 40 proposals on a large space"

    def test_generate_multiple_parameters(self, tuner_factory):
        space = SPACES["mnist1d"]
        tuner = tuner_factory(0)
        tuner.update_search_space(space)
        batch = tuner.generate_multiple_parameters(list(range(5)))
        assert isinstance(batch, list) and len(batch) == 5
        for params in batch:
            check_parameters(params, space)
        for pid, params in enumerate(batch):
            tuner.receive_trial_result(pid, params, _toy_value(params))
            tuner.trial_end(pid, True)
        check_parameters(tuner.generate_parameters(5), space)

    def test_deterministic_under_seed(self, tuner_factory):
        space = SPACES["mnist1d"]
        runs = [drive(tuner_factory(7), space, 60, concurrency=4, fail_every=7)[0] for _ in range(2)]
        assert runs[0] == runs[1]

    def test_no_duplicates_and_exhaustion(self, tuner_factory):
        size = space_size(SMALL_SPACE)
        tuner = tuner_factory(1)
        proposals, _ = drive(tuner, SMALL_SPACE, size + 10, concurrency=2, fail_every=4)
        for params in proposals:
            check_parameters(params, SMALL_SPACE)
        hashes = _hashes(proposals, SMALL_SPACE)
        if self.no_duplicates:
            assert len(set(hashes)) == len(hashes), "an architecture was proposed twice"
        if self.exhausts_space:
            assert len(proposals) == size, f"{len(proposals)} proposals on a space of {size}"
            with pytest.raises(NoMoreTrialError):
                tuner.generate_parameters(10_000)
        else:
            assert len(proposals) == size + 10

    def test_checkpoint_round_trip_with_trials_in_flight(self, tuner_factory):
        space = SPACES["mnist1d"]
        tuner = tuner_factory(3)
        pending: list = []
        log = CallLog()
        drive(tuner, space, 30, concurrency=4, fail_every=6, pending=pending, log=log)
        assert pending, "the drive should leave trials in flight"
        state = tuner.save_checkpoint()
        state = json.loads(json.dumps(state))  # must be JSON-able
        if state is None:  # no checkpoint (optional in NNI): a fresh tuner, same arguments, replays the calls
            clone = tuner_factory(3)
            clone.update_search_space(space)
            CallLog(json.loads(json.dumps(log.records))).replay(clone)
        else:
            clone = tuner_factory(99)
            clone.update_search_space(space)
            clone.load_checkpoint(state)
        original_next, _ = drive(tuner, None, 30, concurrency=4, seed=5, start_id=30, pending=list(pending))
        clone_next, _ = drive(clone, None, 30, concurrency=4, seed=5, start_id=30, pending=list(pending))
        assert original_next == clone_next
        assert len(original_next) == 30

    def test_pickled_tuner_continues_identically(self, tuner_factory):
        space = SPACES["mnist1d"]
        tuner = tuner_factory(4)
        pending: list = []
        drive(tuner, space, 20, concurrency=3, pending=pending)
        copy = pickle.loads(pickle.dumps(tuner))
        a, _ = drive(tuner, None, 20, concurrency=3, start_id=20, pending=list(pending))
        b, _ = drive(copy, None, 20, concurrency=3, start_id=20, pending=list(pending))
        assert a == b

    def test_asynchronous_use_does_not_stall(self, tuner_factory):
        space = SPACES["mnist1d"]
        proposals, _ = drive(tuner_factory(5), space, 80, concurrency=8, fail_every=3, dict_every=2)
        assert len(proposals) == 80
        for params in proposals:
            check_parameters(params, space)

    def test_all_trials_failing_does_not_stall(self, tuner_factory):
        space = SPACES["mnist1d"]
        proposals, _ = drive(tuner_factory(6), space, 40, concurrency=2, fail_every=1)
        assert len(proposals) == 40

    def test_foreign_and_imported_results(self, tuner_factory):
        space = SPACES["mnist1d"]
        tuner = tuner_factory(8)
        tuner.update_search_space(space)
        foreign = {
            "op0": {"_value": "conv5", "_idx": 1},
            "op1": {"_value": "conv5", "_idx": 1},
            "op2": {"_value": "identity", "_idx": 5},
            "op3": {"_value": "conv3", "_idx": 0},
            "skip1": {"_value": ["stem"], "_idx": [0]},
            "skip2": {"_value": [], "_idx": []},
            "skip3": {"_value": ["stem", "op1"], "_idx": [0, 2]},
        }
        tuner.receive_trial_result("foreign-1", foreign, 0.5, customized=True)
        tuner.trial_end("foreign-1", True)
        imported = dict(foreign, op3={"_value": "conv7", "_idx": 2})
        tuner.import_data([{"parameter": imported, "value": 0.7}, {"parameter": foreign, "value": {"default": 0.1}}])
        proposals, _ = drive(tuner, None, 20, concurrency=2)
        assert len(proposals) == 20
        for params in proposals:
            check_parameters(params, space)
        if self.no_duplicates:
            known = set(_hashes([foreign, imported], space))
            assert not known & set(_hashes(proposals, space)), "a foreign or imported architecture was proposed"

    def test_bad_search_space_is_an_error(self, tuner_factory):
        with pytest.raises(ValueError, match="bad"):
            tuner_factory(0).update_search_space({"k": {"_type": "bad", "_value": ["a"]}})
