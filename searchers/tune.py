"""Ray Tune adapter: NNI-protocol tuners as Tune searchers, and NAS spaces as Tune spaces.

- :class:`TunerSearcher` wraps a :class:`searchers.Tuner` as a ``ray.tune.search.Searcher``;
  every trial's config is ``{"arch": parameters}``.
- :func:`to_tune_space` turns the nnictl space into a Tune ``param_space`` so that Tune's own
  searchers (``BasicVariantGenerator``, ``OptunaSearch`` ...) search it; :func:`from_tune_config`
  turns a trial's config back into the parameter form (it accepts TunerSearcher configs too).
- :func:`load_searcher` builds either from an import path.

Facts of Ray 2.60 this module is built around (measured on Ray 2.60): ``set_search_properties`` is
called only when ``param_space`` is non-empty, so space, metric and mode are constructor
arguments; failed trials arrive as ``on_trial_complete(id, result=None, error=True)`` and
trials stopped while pending as ``result=None, error=False``; ``save`` / ``restore`` are needed
for ``Tuner.restore``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from searchers.base import CallLog, NoMoreTrialError, Tuner, calls_without_argument
from searchers.errors import CheckpointError, ConfigError, ConfigTypeError, SearcherLoadError
from searchers.imports import import_object
from searchers.space import (
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    SearchSpaceError,
    choice_parameter,
    parse_search_space,
    to_parameters,
)

__all__ = ["ARCH_KEY", "TunerSearcher", "to_tune_space", "from_tune_config", "load_searcher", "SearcherLoadError"]

ARCH_KEY = "arch"
_MODES = ("max", "min")
_COMBINATION_LIMIT = 100_000

logger = logging.getLogger(__name__)


def _check_mode(mode: Any) -> str | None:
    if mode is not None and mode not in _MODES:
        raise ConfigError(f"mode must be one of 'max', 'min' or None, got {mode!r}")
    return mode


def _check_metric(metric: Any) -> str | None:
    if metric is not None and not isinstance(metric, str):
        raise ConfigTypeError(f"metric must be a str or None, got {metric!r}")
    return metric


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
        super().__init__(metric=_check_metric(metric), mode=_check_mode(mode))
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
            self._metric = _check_metric(metric)
        if self._mode is None and mode is not None:
            self._mode = _check_mode(mode)
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


# -- Tune spaces -----------------------------------------------------------------------------


def _combination_label(indices: Sequence[int]) -> str:
    return ",".join(str(i) for i in indices)


def to_tune_space(search_space: Mapping[str, Any]) -> dict:
    """The nnictl space as a Tune ``param_space``: ``{"arch": {key: domain}}``.

    A layer choice becomes ``tune.choice`` over candidate names (indices where names are empty or
    repeated); an input choice with ``n_chosen=None`` a dict ``{str(index): tune.choice([False,
    True])}``; with ``n_chosen=k`` (``0 < k < n``) ``tune.choice`` over the combinations written
    ``"i,j"``; with ``n_chosen`` 0 or ``n`` the constant list of indices. Every domain is
    categorical over plain values, as Optuna requires. :func:`from_tune_config` reads a sampled
    config back.

    Args:
        search_space: the nnictl JSON.

    Returns:
        The Tune search space.

    Raises:
        SearchSpaceError: the space breaks a rule, or an input choice has more than 100000
            combinations.
    """
    from ray import tune

    out: dict[str, Any] = {}
    for key, c in parse_search_space(search_space).items():
        n = c.length
        if c.type == LAYER_CHOICE:
            out[key] = tune.choice([c.label(i) for i in range(n)])
        elif c.n_chosen is None:
            out[key] = {str(i): tune.choice([False, True]) for i in range(n)}
        elif c.n_chosen in (0, n):
            out[key] = list(range(c.n_chosen))
        else:
            if math.comb(n, c.n_chosen) > _COMBINATION_LIMIT:
                raise SearchSpaceError(
                    f"input choice has {math.comb(n, c.n_chosen)} combinations (limit {_COMBINATION_LIMIT}) "
                    f"for key {key!r}"
                )
            from itertools import combinations

            out[key] = tune.choice([_combination_label(x) for x in combinations(range(n), c.n_chosen)])
    return {ARCH_KEY: out}


def _from_tune_value(choice: Choice, value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) & {"_value", "_idx", "_idex"}:
        return value  # already the parameter form
    if choice.type == INPUT_CHOICE:
        if isinstance(value, Mapping):
            bad = sorted(k for k in value if not (isinstance(k, str) and k.isdigit() and int(k) < choice.length))
            if bad or len(value) != choice.length:
                raise SearchSpaceError(
                    f"a Tune input-choice value maps '0'..'{choice.length - 1}' to bools, got {dict(value)!r} "
                    f"for key {choice.key!r}"
                )
            return sorted(int(k) for k, on in value.items() if on)
        if isinstance(value, str) and (value == "" or all(p.isdigit() for p in value.split(","))):
            return [int(p) for p in value.split(",")] if value else []
    return value


def from_tune_config(config: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """A trial config back in the tuner parameter form ``{key: {"_value", "_idx"}}``.

    Args:
        config: a trial's config, sampled from :func:`to_tune_space` or suggested by
            :class:`TunerSearcher` (``{"arch": ...}``; the ``"arch"`` dict itself also works).
        search_space: the nnictl JSON.

    Returns:
        The parameters.

    Raises:
        SearchSpaceError: the config does not fit the space.
    """
    choices = parse_search_space(search_space)
    arch = config.get(ARCH_KEY, config) if isinstance(config, Mapping) else config
    if not isinstance(arch, Mapping):
        raise SearchSpaceError(f"a trial config holds the architecture under {ARCH_KEY!r}, got {config!r}")
    unknown = sorted(set(arch) - set(choices))
    if unknown:
        raise SearchSpaceError(f"unknown key {unknown[0]!r} in trial config (valid keys: {', '.join(choices)})")
    plain = {k: _from_tune_value(choices[k], v) for k, v in arch.items()}
    return to_parameters(plain, choices)


# -- loading by import path --------------------------------------------------------------------


def _searcher_classes(module: Any) -> list[str]:
    return [
        n
        for n, v in vars(module).items()
        if isinstance(v, type)
        and issubclass(v, (Tuner, Searcher))
        and not inspect.isabstract(v)
        and not n.startswith("_")
        and v is not Searcher
    ]


def _accepts(cls: type, name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _build(cls: type, path: str, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)``, after checking that its constructor takes these keywords."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            takes = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise ConfigTypeError(
                f"keyword arguments {sorted(kwargs)} do not fit searcher {path!r}: {exc} "
                f"(it takes: {', '.join(takes) or 'none'})"
            ) from None
    return cls(**kwargs)


def load_searcher(
    path: str,
    *,
    search_space: Mapping[str, Any],
    metric: str,
    mode: str,
    seed: int | None = None,
    **kwargs: Any,
) -> Searcher:
    """Build a Tune searcher from ``"package.module:Name"``.

    A :class:`searchers.Tuner` subclass is built with ``**kwargs`` (plus ``optimize_mode`` from
    ``mode`` when it takes one and ``kwargs`` does not set it) and wrapped in
    :class:`TunerSearcher`; its trials get ``{"arch": parameters}``. A ``ray.tune.search.Searcher``
    subclass is built with ``metric``, ``mode``, ``**kwargs`` and ``space=to_tune_space(...)`` when
    it takes ``space`` (else the space goes through ``set_search_properties``); its trials get
    :func:`to_tune_space` configs, which :func:`from_tune_config` turns into parameters.

    Args:
        path: ``"package.module:Name"``.
        search_space: the nnictl JSON.
        metric: the result key to optimize.
        mode: ``"max"`` or ``"min"``.
        seed: passed as ``seed`` to a class whose constructor takes one (else ignored).
        **kwargs: constructor arguments of the class.

    Returns:
        The searcher.

    Raises:
        SearcherLoadError: bad path, import failure, missing name, or an object that is neither
            kind (the message says what was found).
        ConfigError: ``mode`` is not ``"max"`` or ``"min"``.
        ConfigTypeError: ``kwargs`` do not fit the class's constructor (the message lists the
            keywords it takes).
    """
    _check_mode(mode)
    obj = import_object(
        path,
        what="searcher",
        error=SearcherLoadError,
        offers=_searcher_classes,
        offers_label="tuners and searchers there",
    )
    if seed is not None and isinstance(obj, type) and _accepts(obj, "seed"):
        kwargs["seed"] = seed
    if isinstance(obj, type) and issubclass(obj, Tuner):
        if "optimize_mode" not in kwargs and _accepts(obj, "optimize_mode") and mode is not None:
            kwargs["optimize_mode"] = "maximize" if mode == "max" else "minimize"
        return TunerSearcher(_build(obj, path, kwargs), search_space=search_space, metric=metric, mode=mode)
    if isinstance(obj, type) and issubclass(obj, Searcher):
        tune_space = to_tune_space(search_space)
        if "space" in kwargs:
            raise ConfigError(
                f"keyword argument 'space' of searcher {path!r} is set by raynas (the experiment's search space, "
                f"as to_tune_space writes it); remove it, got {kwargs['space']!r}"
            )
        if _accepts(obj, "space"):
            return _build(obj, path, dict(kwargs, space=tune_space, metric=metric, mode=mode))
        searcher = _build(obj, path, dict(kwargs, metric=metric, mode=mode))
        if not searcher.set_search_properties(metric, mode, tune_space):
            raise SearcherLoadError(f"searcher {path!r} did not accept the search space via set_search_properties")
        return searcher
    found = f"class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else f"{type(obj).__name__} {obj!r}"
    raise SearcherLoadError(
        f"{path!r} must name a searchers.Tuner or ray.tune.search.Searcher subclass, found {found}"
    )
