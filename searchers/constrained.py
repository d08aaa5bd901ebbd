"""``ConstrainedSearcher``: reject proposals that break a constraint before they become trials."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from searchers.checks import check_callable, positive_int
from searchers.errors import ConfigTypeError, ConstraintError

__all__ = ["ConstrainedSearcher", "ConstraintError"]


class ConstrainedSearcher(Searcher):
    """Wrap any Tune ``Searcher`` so that proposals breaking a constraint are never run.

    A rejected proposal is reported back to the wrapped searcher as a failed trial (its own
    trial id, never seen by Tune), so tuners learn nothing from it and move on; no trial is spent.
    It composes like ``ConcurrencyLimiter``: ``ConcurrencyLimiter(ConstrainedSearcher(s, ...))``.

    Args:
        searcher: the searcher to wrap.
        constraint: ``f(config) -> None`` when the suggested config is allowed, else a short
            reason (``"params 120000 > max_params 100000"``).
        max_rejections: consecutive rejections after which :class:`ConstraintError` is raised.
    """

    def __init__(self, searcher: Searcher, *, constraint: Callable[[dict], str | None], max_rejections: int = 10_000):
        if not isinstance(searcher, Searcher):
            raise ConfigTypeError(
                f"searcher must be a ray.tune.search.Searcher (ConstrainedSearcher wraps one), "
                f"got {type(searcher).__name__}"
            )
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.constraint = check_callable("constraint", constraint, signature="(config) -> str | None", optional=False)
        self.max_rejections = positive_int("max_rejections", max_rejections)
        self.rejected = 0
        self.last_reason: str | None = None
        self._aliases: dict[str, str] = {}  # Tune's trial id -> the id the wrapped searcher knows

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | str | None:
        for attempt in range(self.max_rejections):
            inner_id = trial_id if attempt == 0 else f"{trial_id}__rejected{attempt}"
            config = self.searcher.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            reason = self.constraint(config)
            if reason is None:
                if inner_id != trial_id:
                    self._aliases[trial_id] = inner_id
                return config
            self.rejected += 1
            self.last_reason = reason
            self.searcher.on_trial_complete(inner_id, result=None, error=True)
        raise ConstraintError(
            f"{self.max_rejections} proposals in a row broke the constraint (last: {self.last_reason}); "
            "loosen the constraint or check the search space"
        )

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(self._aliases.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(self._aliases.pop(trial_id, trial_id), result=result, error=error)

    def get_state(self) -> dict:
        return {"rejected": self.rejected, "aliases": dict(self._aliases), "last_reason": self.last_reason}

    def set_state(self, state: dict) -> None:
        self.rejected = state["rejected"]
        self._aliases = dict(state["aliases"])
        self.last_reason = state["last_reason"]

    def save(self, checkpoint_path: str) -> None:
        inner_path = f"{checkpoint_path}.inner"
        self.searcher.save(inner_path)
        try:
            with open(inner_path, "rb") as f:
                inner = f.read()
        finally:
            if os.path.exists(inner_path):
                os.unlink(inner_path)
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": self.get_state(), "inner": inner}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            data = pickle.load(f)
        self.set_state(data["state"])
        inner_path = f"{checkpoint_path}.inner"
        with open(inner_path, "wb") as f:
            f.write(data["inner"])
        try:
            self.searcher.restore(inner_path)
        finally:
            os.unlink(inner_path)
