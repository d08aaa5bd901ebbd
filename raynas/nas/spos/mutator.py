"""Single Path One-Shot (SPOS, Guo et al. 2019): random single paths constrained by FLOPs bins.

Two mutators, both :class:`~raynas.nas.RandomMutator` subclasses:

- :class:`SPOSSupernetTrainingMutator` is NNI's (``nni.nas.pytorch.spos``), with NNI's signature
  and sampling: the user's ``flops_func(candidate)`` prices a path; each draw takes a bin of
  ``[flops_lb, flops_ub]`` uniformly at random and a random path, and returns the path when its
  FLOPs fall in that bin (``supernet.algorithm: spos`` with ``supernet.flops_func``).
- :class:`SposMutator` is raynas' own: paths priced by a profiled cost table (parameters and/or
  FLOPs, see :func:`raynas.nas.costs.profile_costs`), one bin per step, the closest draw as
  the fallback (``supernet.algorithm: spos`` without ``supernet.flops_func``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from raynas.nas.random import RandomMutator
from searchers.errors import ConfigError

if TYPE_CHECKING:
    from raynas.nas.costs import PathCosts

__all__ = ["SPOSSupernetTrainingMutator", "SposMutator"]

_logger = logging.getLogger(__name__)

#: mixed into ``seed`` for the bin generator, so that it is independent of the paths' generator
_BIN_STREAM = 0x5B05


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class SPOSSupernetTrainingMutator(RandomMutator):
    """NNI's SPOS training mutator: random paths, uniform over FLOPs bins when a FLOPs function is given.

    ``[flops_lb, flops_ub]`` is cut into ``flops_bin_num`` equal bins (closed intervals). Each
    :meth:`sample_search` tries up to ``flops_sample_timeout`` times: take a bin uniformly at random
    and a random path (:class:`~raynas.nas.RandomMutator`'s draw), and return the path when
    ``flops_func(path)`` lies in that bin. When every try misses, it logs a warning, counts a
    fallback (:attr:`fallbacks`) and returns one more plain random path. ``flops_func=None``: plain
    random paths, exactly ``RandomMutator``'s.

    As in NNI v1.9 the bin is drawn afresh at every try (not once per path), so an accepted path's
    FLOPs follow the distribution of random paths restricted to ``[flops_lb, flops_ub]`` (a path on
    an inner bin edge counts twice).

    Args:
        model: the model holding the mutables.
        flops_func: ``f(candidate) -> number``, where ``candidate`` is ``{key: bool mask}`` as
            :meth:`RandomMutator.sample_search` returns it (NNI's example passes the model's
            ``get_candidate_flops``); ``None`` turns the FLOPs bins off.
        flops_lb: lower bound of the FLOPs bins (needed with ``flops_func``).
        flops_ub: upper bound of the FLOPs bins (needed with ``flops_func``).
        flops_bin_num: number of equal-width bins between the bounds.
        flops_sample_timeout: tries per path before the fallback to a plain random path.
        seed: ``None`` (NNI's behaviour): the bins come from numpy's global RNG (``np.random``)
            and the paths from ``RandomMutator``'s unseeded draw, so ``np.random.seed`` and
            ``torch.manual_seed`` reproduce a run. An int: the mutator owns its RNGs (the global
            ones are neither read nor disturbed); their state travels in ``state_dict()`` and in
            a pickle.

    Raises:
        ConfigError: ``flops_func`` is given without both bounds, or a setting is not a number of
            the right kind.
    """

    def __init__(
        self,
        model: nn.Module,
        flops_func: Callable[[dict[str, torch.Tensor]], Any] | None = None,
        flops_lb: float | None = None,
        flops_ub: float | None = None,
        flops_bin_num: int = 7,
        flops_sample_timeout: int = 500,
        *,
        seed: int | None = None,
    ):
        if flops_func is not None:
            if not callable(flops_func):
                raise ConfigError(
                    f"SPOSSupernetTrainingMutator flops_func must be callable or None, got {type(flops_func).__name__}"
                )
            if not (_is_number(flops_lb) and _is_number(flops_ub)):
                raise ConfigError(
                    "SPOSSupernetTrainingMutator flops_func needs numeric flops_lb and flops_ub, "
                    f"got {flops_lb!r}, {flops_ub!r}"
                )
            if not _is_int(flops_bin_num) or flops_bin_num < 1:
                raise ConfigError(
                    f"SPOSSupernetTrainingMutator flops_bin_num must be an integer >= 1, got {flops_bin_num!r}"
                )
            if not _is_int(flops_sample_timeout) or flops_sample_timeout < 0:
                raise ConfigError(
                    "SPOSSupernetTrainingMutator flops_sample_timeout must be an integer >= 0, "
                    f"got {flops_sample_timeout!r}"
                )
        super().__init__(model, seed=seed)
        self.flops_func = flops_func
        self.flops_lb = flops_lb
        self.flops_ub = flops_ub
        self.flops_bin_num = flops_bin_num
        self.flops_sample_timeout = flops_sample_timeout
        #: the bin edges, ``flops_bin_num + 1`` of them (empty without ``flops_func``).
        self.flops_bins: list[float] = []
        if flops_func is not None:
            width = (flops_ub - flops_lb) / self.flops_bin_num
            self.flops_bins = [flops_lb + width * i for i in range(self.flops_bin_num + 1)]
        #: the bin generator when seeded; ``None``: numpy's global RNG.
        self._bin_rng = None if seed is None else np.random.default_rng([int(seed), _BIN_STREAM])
        #: paths for which every try missed its bin (a plain random path was returned).
        self.fallbacks = 0
        #: ``flops_func`` of the latest accepted path (``None`` after a fallback or without it).
        self.last_flops: Any = None

    def _draw_bin(self) -> int:
        if self._bin_rng is None:
            return int(np.random.randint(self.flops_bin_num))
        return int(self._bin_rng.integers(self.flops_bin_num))

    def sample_search(self) -> dict[str, torch.Tensor]:
        """A random path; with ``flops_func``, one whose FLOPs fall in a random bin (see the class)."""
        if self.flops_func is not None:
            for tries in range(self.flops_sample_timeout):
                b = self._draw_bin()
                candidate = super().sample_search()
                flops = self.flops_func(candidate)
                if self.flops_bins[b] <= flops <= self.flops_bins[b + 1]:
                    _logger.debug("Sampled a candidate of %s FLOPs in %d tries.", flops, tries + 1)
                    self.last_flops = flops
                    return candidate
            _logger.warning("Failed to sample a flops-valid candidate within %d tries.", self.flops_sample_timeout)
            self.fallbacks += 1
            self.last_flops = None
        return super().sample_search()

    def sample_final(self) -> dict[str, torch.Tensor]:
        """The same as :meth:`sample_search` (NNI's)."""
        return self.sample_search()

    def get_extra_state(self) -> Any:
        state = dict(super().get_extra_state())
        state["spos_bin_rng"] = None if self._bin_rng is None else self._bin_rng.bit_generator.state
        state["spos_fallbacks"] = self.fallbacks
        return state

    def set_extra_state(self, state: Any) -> None:
        state = dict(state)
        bins = state.pop("spos_bin_rng", None)
        self.fallbacks = int(state.pop("spos_fallbacks", 0))
        super().set_extra_state(state)
        if bins is not None:
            if self._bin_rng is None:
                self._bin_rng = np.random.default_rng()
            self._bin_rng.bit_generator.state = bins


class SposMutator(RandomMutator):
    """Uniform paths constrained to one of several cost bins per step (raynas' SPOS on profiled costs).

    Each :meth:`sample_search` picks one of ``bins`` equal-width cost bins between the bounds, then
    draws uniform paths until one falls inside it. When ``max_tries`` draws miss (a bin that is
    empty or very rare in the space), it takes the draw closest to the bin and counts a fallback
    (:attr:`fallbacks`; logged to TensorBoard), so training never stalls on an unreachable bin.

    Args:
        model: the model holding the mutables.
        costs: the model's :class:`~raynas.nas.costs.PathCosts` (see
            :func:`~raynas.nas.costs.profile_costs`).
        bins: number of equal-width bins between the bounds.
        constraint: ``params``, ``flops`` or ``both`` (a draw must fall in the bin on each).
        lower: lower bound as a fraction of the way from the cheapest to the dearest path.
        upper: upper bound on the same scale.
        max_tries: uniform draws per step before the fallback (the draw closest to the bin).
        seed: seeds the mutator's RNG (bin choice and draws); its state travels in ``state_dict()``.

    Raises:
        ConfigError: a bad ``constraint``, ``bins`` or pair of bounds.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        costs: PathCosts,
        bins: int = 4,
        constraint: str = "params",
        lower: float = 0.0,
        upper: float = 1.0,
        max_tries: int = 100,
        seed: int | None = None,
    ):
        if constraint not in ("params", "flops", "both"):
            raise ConfigError(f"SposMutator constraint must be one of params, flops, both, got {constraint!r}")
        if not _is_int(bins) or bins < 1:
            raise ConfigError(f"SposMutator bins must be an integer >= 1, got {bins!r}")
        if not 0.0 <= lower < upper <= 1.0:
            raise ConfigError(f"SposMutator 0 <= lower < upper <= 1 must hold, got lower={lower!r}, upper={upper!r}")
        super().__init__(model, seed=seed)
        self.costs = costs
        self.bins = int(bins)
        self.max_tries = int(max_tries)
        self.metrics = ("params", "flops") if constraint == "both" else (constraint,)
        #: per metric: (low, high) absolute bounds of the bins.
        self.ranges: dict[str, tuple[float, float]] = {}
        for metric in self.metrics:
            cmin, cmax = costs.bounds(metric)
            self.ranges[metric] = (cmin + lower * (cmax - cmin), cmin + upper * (cmax - cmin))
        #: steps whose bin was missed ``max_tries`` times (the closest draw was used).
        self.fallbacks = 0
        #: the bin and the ``(params, flops)`` of the latest sampled path.
        self.last_bin: int | None = None
        self.last_cost: tuple[int, int] | None = None

    def bin_edges(self, metric: str, b: int) -> tuple[float, float]:
        """The ``[low, high]`` interval of bin ``b`` for ``metric``."""
        low, high = self.ranges[metric]
        width = (high - low) / self.bins
        return low + b * width, low + (b + 1) * width

    def distance(self, cost: tuple[int, int], b: int) -> float:
        """How far a cost lies outside bin ``b`` (0.0 inside), in units of the bounds' width."""
        total = 0.0
        for metric in self.metrics:
            value = cost[0 if metric == "params" else 1]
            lo, hi = self.bin_edges(metric, b)
            span = max(self.ranges[metric][1] - self.ranges[metric][0], 1e-12)
            total += max(lo - value, 0.0, value - hi) / span
        return total

    def sample_search(self) -> dict[str, torch.Tensor]:
        b = int(self._rng.integers(self.bins))
        best, best_cost, best_d = None, None, math.inf
        for _ in range(self.max_tries):
            decisions = super().sample_search()
            cost = self.costs.cost(decisions)
            d = self.distance(cost, b)
            if d < best_d:
                best, best_cost, best_d = decisions, cost, d
            if d == 0.0:
                break
        else:
            self.fallbacks += 1
        self.last_bin, self.last_cost = b, best_cost
        return best

    def get_extra_state(self) -> Any:
        return {**super().get_extra_state(), "fallbacks": self.fallbacks}

    def set_extra_state(self, state: Any) -> None:
        state = dict(state)
        self.fallbacks = int(state.pop("fallbacks", 0))
        super().set_extra_state(state)
