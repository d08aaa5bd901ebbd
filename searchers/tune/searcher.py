"""``TunerSearcher``: an NNI-protocol tuner driven as a Ray Tune ``Searcher``.

Facts of Ray 2.60 this module is built around (measured on Ray 2.60): ``set_search_properties`` is
called only when ``param_space`` is non-empty, so space, metric and mode are constructor
arguments; failed trials arrive as ``on_trial_complete(id, result=None, error=True)`` and
trials stopped while pending as ``result=None, error=False``; ``save`` / ``restore`` are needed
for ``Tuner.restore``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from searchers.base import NoMoreTrialError, Tuner
from searchers.calllog import CallLog
from searchers.checks import check_metric_name, check_tune_mode
from searchers.errors import CheckpointError, ConfigError, ConfigTypeError
from searchers.signatures import calls_without_argument
from searchers.space import Choice, SearchSpaceError, choice_parameter, parse_search_space, to_parameters
from searchers.tune.spaces import ARCH_KEY

__all__ = ["TunerSearcher"]

logger = logging.getLogger(__name__)


def _has_domains(config: Any) -> bool:
    if isinstance(config, Domain):
        return True
    if isinstance(config, Mapping):
        return any(_has_domains(v) for v in config.values())
    if isinstance(config, (list, tuple)):
        return any(_has_domains(v) for v in config)
    return False


class TunerSearcher(Searcher):
    """A ``ray.tune.search.Searcher`` that asks an NNI-protocol tuner for architectures.

    ``suggest`` returns ``{"arch": parameters}``. A completed trial's ``result[metric]`` goes to
    ``tuner.receive_trial_result`` (then ``trial_end(success=True)``); a failed trial, a trial
    stopped while pending, or a result without the metric (or with NaN) goes to
    ``tuner.trial_end(success=False)``. When the tuner raises ``NoMoreTrialError``, ``suggest``
    returns ``None`` while trials of this searcher still run and ``Searcher.FINISHED`` once none
    does. ``save`` / ``restore`` carry the tuner checkpoint, the trial-id map and the pending
    ``points_to_evaluate``, so ``tune.Tuner.restore`` resumes without repeats; the searcher works
    under ``ConcurrencyLimiter``. A tuner that keeps no checkpoint (NNI's optional
    ``save_checkpoint`` left out: it returns ``None``) is restored by replaying every call this
    searcher made to it (a :class:`searchers.CallLog`, saved in its place) into the fresh tuner
    that ``Tuner.restore`` unpickles; one log line says so.

    Values reach the tuner oriented for its ``optimize_mode``: with ``mode="min"`` and a tuner that
    maximizes (or ``"max"`` and one that minimizes), the metric is negated.

    Args:
        tuner: the tuner (a :class:`searchers.Tuner`); its search space is set here.
        search_space: the nnictl search space. Required before the first ``suggest`` (Tune does
            not pass it: the trial config only carries what this searcher suggests).
        metric: the result key to optimize. Tune passes TuneConfig's metric only when
            ``param_space`` is non-empty, so give it here.
        mode: ``"max"`` or ``"min"`` (``None``: values reach the tuner as reported).
        points_to_evaluate: architectures (any form ``searchers.space`` reads) to run first;
            their results reach the tuner with ``customized=True``.
        parameter_id_key: when set, every suggested config also carries the tuner's parameter
            id under this key (``{"arch": ..., key: id}``; ids count 0, 1, ... in suggestion
            order, NNI's trial sequence ids).
    """

    def __init__(
        self,
        tuner: Tuner,
        *,
        search_space: Mapping[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        parameter_id_key: str | None = None,
    ) -> None:
        if not isinstance(tuner, Tuner):
            raise ConfigTypeError(
                "TunerSearcher needs a searchers.Tuner instance, "
                f"got {type(tuner).__module__}.{type(tuner).__qualname__}"
            )
        super().__init__(metric=check_metric_name(metric), mode=check_tune_mode(mode))
        self.tuner = tuner
        self._space: dict | None = None
        self._choices: dict[str, Choice] = {}
        self._trials: dict[str, dict] = {}  # live trial id -> {"pid", "parameters", "customized"}
        self._next_id = 0
        self._points: list[dict] = []
        if points_to_evaluate is not None and (
            isinstance(points_to_evaluate, (str, Mapping)) or not isinstance(points_to_evaluate, Sequence)
        ):
            raise ConfigTypeError(f"points_to_evaluate must be a list of architectures, got {points_to_evaluate!r}")
        self._raw_points = list(points_to_evaluate or [])
        if parameter_id_key is not None and (not isinstance(parameter_id_key, str) or parameter_id_key == ARCH_KEY):
            raise ConfigError(
                f"parameter_id_key must be a str other than {ARCH_KEY!r} or None, got {parameter_id_key!r}"
            )
        self.parameter_id_key = parameter_id_key
        self._log = CallLog()
        if search_space is not None:
            self.set_search_space(search_space)
        elif self._raw_points:
            raise ConfigError("points_to_evaluate needs search_space to check them against")

    # -- configuration -------------------------------------------------------------------------

    def set_search_space(self, search_space: Mapping[str, Any]) -> None:
        """Set the nnictl search space (validated) and pass it to the tuner.

        Args:
            search_space: ``{key: {"_type": ..., "_value": ...}}``.

        Raises:
            SearchSpaceError: the space, or a point to evaluate, breaks a rule.
        """
        choices = parse_search_space(search_space)
        space = {k: c.spec() for k, c in choices.items()}
        points = [to_parameters(p, choices) for p in self._raw_points]
        self.tuner.update_search_space(space)
        self._space, self._choices, self._points = space, choices, points

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Take metric and mode from Tune where not given to the constructor.

        Returns:
            False when ``config`` holds Tune search domains (then Tune reports that two search
            spaces were given), else True.

        Raises:
            ConfigError: ``config`` holds the search space under ``"arch"`` (pass it as
                ``search_space=`` instead), or ``mode`` is not ``"max"``/``"min"``.
        """
        if _has_domains(config):
            return False
        if isinstance(config, Mapping) and isinstance(config.get(ARCH_KEY), Mapping):
            raise ConfigError(
                f"param_space must not hold the architecture under {ARCH_KEY!r}: TunerSearcher suggests it; "
                f"pass the search space as TunerSearcher(search_space=...)"
            )
        if self._metric is None and metric is not None:
            self._metric = check_metric_name(metric)
        if self._mode is None and mode is not None:
            self._mode = check_tune_mode(mode)
        return True

    def _sign(self) -> float:
        tuner_mode = getattr(self.tuner, "optimize_mode", None)
        if (self._mode == "min" and tuner_mode == "maximize") or (self._mode == "max" and tuner_mode == "minimize"):
            return -1.0
        return 1.0

    # -- the Searcher protocol -----------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | str | None:
        """The next architecture as ``{"arch": parameters}``, ``None`` (wait) or ``FINISHED``.

        Raises:
            ConfigError: no search space or no metric was given.
        """
        if self._space is None:
            raise ConfigError("TunerSearcher has no search space: pass TunerSearcher(search_space=...)")
        if self._metric is None:
            raise ConfigError(
                "TunerSearcher has no metric: pass TunerSearcher(metric=...) (Tune passes TuneConfig's "
                "metric only when param_space is non-empty)"
            )
        customized = bool(self._points)
        pid = self._next_id
        if customized:
            parameters = self._points.pop(0)
        else:
            try:
                proposed = self.tuner.generate_multiple_parameters([pid])
            except NoMoreTrialError:
                proposed = []
            if not isinstance(proposed, list) or len(proposed) > 1:
                got = f"{len(proposed)} parameter sets" if isinstance(proposed, list) else type(proposed).__name__
                raise SearchSpaceError(
                    f"{type(self.tuner).__name__}.generate_multiple_parameters must return a list of at most 1 "
                    f"parameter set for 1 id, got {got}"
                )
            if not proposed:
                return None if self._trials else Searcher.FINISHED
            parameters = self._exact(proposed[0])
            self._log.generated(pid, parameters)
        self._next_id += 1
        self._trials[trial_id] = {"pid": pid, "parameters": parameters, "customized": customized}
        config = {ARCH_KEY: copy.deepcopy(parameters)}
        if self.parameter_id_key is not None:
            config[self.parameter_id_key] = pid
        return config

    def _exact(self, parameters: Any) -> dict:
        choices = self._choices
        if not isinstance(parameters, Mapping) or set(parameters) != set(choices):
            got = sorted(parameters) if isinstance(parameters, Mapping) else type(parameters).__name__
            raise SearchSpaceError(
                f"{type(self.tuner).__name__}.generate_parameters must return one parameter per key "
                f"{sorted(choices)}, got {got}"
            )
        return {k: choice_parameter(c, c.resolve(parameters[k], exact=True)) for k, c in choices.items()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Feed the trial's final metric to the tuner, or report it failed."""
        entry = self._trials.pop(trial_id, None)
        if entry is None:
            return
        pid, parameters = entry["pid"], entry["parameters"]
        value = None if error or not isinstance(result, Mapping) else result.get(self._metric)
        usable = (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(float(value))
        )
        if not usable:
            self.tuner.trial_end(pid, False)
            self._log.ended(pid, False)
            return
        kwargs = {"customized": True} if entry["customized"] else {}
        oriented = self._sign() * float(value)
        self.tuner.receive_trial_result(pid, copy.deepcopy(parameters), oriented, **kwargs)
        self._log.received(pid, parameters, oriented, customized=entry["customized"])
        self.tuner.trial_end(pid, True)
        self._log.ended(pid, True)

    def add_evaluated_point(
        self,
        parameters: Mapping[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Hand a result evaluated elsewhere to ``tuner.import_data`` (errors and pruned skipped).

        Args:
            parameters: ``{"arch": architecture}`` (a trial config) or the architecture itself.
            value: the metric value (oriented like Tune's ``mode``).
            error: the evaluation failed (nothing is imported).
            pruned: the evaluation was stopped early (nothing is imported).
            intermediate_values: ignored.
        """
        if self._space is None:
            raise ConfigError("TunerSearcher has no search space: pass TunerSearcher(search_space=...)")
        if error or pruned:
            return
        arch = parameters[ARCH_KEY] if isinstance(parameters, Mapping) and ARCH_KEY in parameters else parameters
        records = [{"parameter": to_parameters(arch, self._space), "value": self._sign() * float(value)}]
        self.tuner.import_data(copy.deepcopy(records))
        self._log.imported(records)

    # -- state ---------------------------------------------------------------------------------

    def get_state(self) -> dict:
        """Everything ``restore`` needs, JSON-able.

        Holds the tuner's checkpoint, or, for a tuner whose ``save_checkpoint`` returns ``None``,
        the log of every call made to it (``"calls"``). After a checkpoint, the log is dropped.
        """
        checkpoint = self.tuner.save_checkpoint()
        if checkpoint is not None:
            self._log.clear()
        return {
            "format": 1,
            "tuner_class": f"{type(self.tuner).__module__}:{type(self.tuner).__qualname__}",
            "tuner": checkpoint,
            "calls": None if checkpoint is not None else self._log.records,
            "search_space": self._space,
            "metric": self._metric,
            "mode": self._mode,
            "trials": self._trials,
            "next_id": self._next_id,
            "points": self._points,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s data.

        The tuner is loaded from its checkpoint; a tuner that kept none must be fresh (as
        ``Tuner.restore`` unpickles it): NNI's argument-less ``load_checkpoint()`` is called, then
        the search space is set and the recorded calls are replayed into it.

        Raises:
            CheckpointError: the state holds another tuner class, or a replay is asked of a searcher
                that has already suggested trials.
            RuntimeError: a replayed call failed.
        """
        expected = f"{type(self.tuner).__module__}:{type(self.tuner).__qualname__}"
        if state.get("tuner_class") != expected:
            raise CheckpointError(
                f"searcher state holds a {state.get('tuner_class')!r} tuner, this searcher wraps {expected!r}"
            )
        replay = state["tuner"] is None
        if replay:
            if self._next_id or self._log.records:
                raise CheckpointError(
                    f"restoring {type(self.tuner).__name__} (no checkpoint) replays its calls into a fresh tuner, "
                    f"but this searcher has already suggested {self._next_id} trials"
                )
            calls = CallLog(state.get("calls") or [])
            if calls_without_argument(self.tuner.load_checkpoint):
                self.tuner.load_checkpoint()
        if state["search_space"] is not None:
            self._space = state["search_space"]
            self._choices = parse_search_space(self._space)
            self.tuner.update_search_space(self._space)
        if replay:
            calls.replay(self.tuner)
            self._log = calls
            logger.warning(
                "TunerSearcher: %s keeps no checkpoint (save_checkpoint() returned None): replayed its %d recorded "
                "calls (%d results) into the fresh tuner",
                type(self.tuner).__name__,
                len(calls.records),
                calls.results,
            )
        else:
            self.tuner.load_checkpoint(state["tuner"])
        self._metric = state["metric"] if self._metric is None else self._metric
        self._mode = state["mode"] if self._mode is None else self._mode
        self._trials = {str(k): dict(v) for k, v in state["trials"].items()}
        self._next_id = int(state["next_id"])
        self._points = list(state["points"])

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (to a temporary name, then renamed)."""
        tmp = f"{checkpoint_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Read a state written by :meth:`save`."""
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))

    @property
    def live_trials(self) -> list[str]:
        """Ids of the trials suggested and not yet complete."""
        return list(self._trials)
