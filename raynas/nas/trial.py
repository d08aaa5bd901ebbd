"""NNI's trial API (``nni.get_next_parameter``, ``nni.report_final_result``, ...) on Ray Tune trials.

An NNI trial script talks to NNI through module-level functions of ``nni``. Here they talk to the Ray
Tune trial they run in:

- :func:`get_next_parameter` returns the parameters the Tune searcher proposed for this trial: for
  :class:`searchers.tune.TunerSearcher` the NNI parameter form ``{"key": {"_value": ..., "_idx": ...}}``
  (config ``"arch"``); for a Tune searcher over :func:`searchers.tune.to_tune_space`, the same form
  converted back; for a plain hyper-parameter config, the config itself. As in NNI (not multi-phase),
  the first call of a trial returns them, later calls return ``None``.
- :func:`report_intermediate_result` and :func:`report_final_result` call ``ray.tune.report``: a number
  is reported under the trial's metric (``"default"`` unless the experiment names another, as NNI's
  tuners read ``"default"``); a dict is reported as it is and must hold the metric. Each result also
  carries ``nni_final`` (``True`` for the final result) and ``nni_sequence`` (NNI's intermediate index).
  The tuner receives the trial's last reported result: its final result in an NNI script.
- :func:`get_experiment_id`, :func:`get_trial_id`, :func:`get_sequence_id` and
  :func:`get_current_parameter` as in NNI.

A trial is entered by raynas' classic-NAS launcher (:func:`raynas.nas.classic_launch.run_classic_nas`,
``raynas classic-nas``), or, in your own Tune trainable, by wrapping it with :func:`with_nni_trial` (or
entering :func:`trial_context`). Outside a trial the functions behave as NNI's standalone platform:
``get_next_parameter()`` warns and returns ``{}``, reports are logged. Inside a Tune trial that was not
entered this way they raise, since they could not know the trial's config.

This module imports neither torch nor ray at import time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import math
import numbers
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from raynas._rules import check
from searchers.errors import ConfigError, ConfigTypeError

__all__ = [
    "PARAMETER_ID_KEY",
    "TrialContext",
    "current_trial",
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_sequence_id",
    "get_trial_id",
    "in_unentered_tune_trial",
    "report_final_result",
    "report_intermediate_result",
    "trial_context",
    "with_nni_trial",
]

#: the config key under which raynas' launcher passes the tuner's parameter id (NNI's sequence id).
PARAMETER_ID_KEY = "nni_parameter_id"

_logger = logging.getLogger("nni")  # NNI's standalone platform logs under "nni"


@dataclass
class TrialContext:
    """What the trial API knows about the Tune trial it runs in.

    Attributes:
        parameters: what :func:`get_next_parameter` returns (once).
        metric: the result key a plain number is reported under.
        report: called with each result dict (``ray.tune.report`` by default).
        parameter_id: the tuner's parameter id of this trial (``None`` when unknown).
        trial_id: the Tune trial id.
        experiment_id: the Tune experiment name.
        taken: whether :func:`get_next_parameter` has returned the parameters.
        intermediate: how many intermediate results were reported.
        finals: how many final results were reported.
    """

    parameters: Any
    metric: str = "default"
    report: Callable[[dict], None] | None = None
    parameter_id: Any = None
    trial_id: str = "STANDALONE"
    experiment_id: str = "STANDALONE"
    taken: bool = False
    intermediate: int = 0
    finals: int = 0
    _current: Any = field(default=None, repr=False)


_context: TrialContext | None = None
_standalone_params: dict | None = None  # NNI's _params outside a trial
_standalone_seq = 0  # NNI's _intermediate_seq outside a trial
_ARCH_KEY = "arch"  # searchers.tune.ARCH_KEY (importing that module loads ray)


def current_trial() -> TrialContext | None:
    """The :class:`TrialContext` in force, or ``None`` (standalone)."""
    return _context


def in_unentered_tune_trial() -> bool:
    """Whether this code runs inside a Ray Tune trial that raynas did not enter (no :class:`TrialContext`
    in force, but a Ray session is): NNI's trial API must not then fall back to standalone defaults."""
    if "ray" not in sys.modules:
        return False
    try:
        from ray.train._internal.session import get_session

        return get_session() is not None
    except Exception:  # noqa: BLE001 - an internal of Ray that may move: then assume standalone
        return False


_in_unentered_tune_trial = in_unentered_tune_trial  # the old private name, kept for existing callers


def _check_entered(api: str) -> None:
    if _context is None and _in_unentered_tune_trial():
        raise RuntimeError(
            f"nni.{api}() runs inside a Ray Tune trial that raynas did not enter: wrap the trainable with "
            "raynas.nas.trial.with_nni_trial(fn) (or enter raynas.nas.trial.trial_context(config)) so that it "
            "can read the trial's config"
        )


def get_next_parameter() -> Any:
    """The parameters the Tune searcher proposed for this trial (NNI's ``nni.get_next_parameter``).

    Returns:
        In a trial: the parameters on the first call, ``None`` on later calls (NNI gives them once per
        trial). Standalone: ``{}``, with NNI's warning.

    Raises:
        RuntimeError: inside a Tune trial that was not entered (see :func:`with_nni_trial`).
    """
    global _standalone_params
    _check_entered("get_next_parameter")
    if _context is None:
        _logger.warning("Requesting parameter without NNI framework, returning empty dict")
        _standalone_params = {}
        return {}
    if _context.taken:
        return None
    _context.taken = True
    _context._current = copy.deepcopy(_context.parameters)
    return copy.deepcopy(_context.parameters)


def get_current_parameter(tag: str | None = None) -> Any:
    """What the last :func:`get_next_parameter` returned (or its entry ``tag``); ``None`` before it."""
    current = _standalone_params if _context is None else _context._current
    if current is None:
        return None
    return current if tag is None else current[tag]


def get_experiment_id() -> str:
    """The Tune experiment's name (``"STANDALONE"`` outside a trial)."""
    return "STANDALONE" if _context is None else _context.experiment_id


def get_trial_id() -> str:
    """The Tune trial id (``"STANDALONE"`` outside a trial)."""
    return "STANDALONE" if _context is None else _context.trial_id


def get_sequence_id() -> int:
    """The trial's sequence number: the tuner's parameter id (0 outside a trial or when unknown)."""
    if _context is None or not isinstance(_context.parameter_id, int):
        return 0
    return _context.parameter_id


def _plain_number(value: Any, api: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigTypeError(
            f"nni.{api}() reports a number or a dict holding one under the metric {key!r}; got "
            f"{type(value).__name__} {value!r} for {key!r} (a tensor: call .item())"
        )
    return float(value)


def _result(metric: Any, api: str) -> dict:
    key = _context.metric
    if isinstance(metric, Mapping):
        out = {str(k): v for k, v in metric.items()}
        if key not in out:
            raise ConfigError(
                f"nni.{api}() got a dict without the trial's metric {key!r} (keys: {sorted(out)}); report a "
                f"number or a dict holding {key!r}"
            )
        for k, v in out.items():
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                out[k] = float(v)
    else:
        out = {key: metric}
    out[key] = _plain_number(out[key], api, key)
    if math.isinf(out[key]):
        raise ConfigError(f"nni.{api}() must report a finite metric {key!r}, got {out[key]!r}")
    return out


def _report(result: dict) -> None:
    if _context.report is not None:
        _context.report(result)
    else:
        from ray import tune

        tune.report(result)


def _require_parameters(api: str) -> None:
    if not _context.taken:
        raise RuntimeError(f"nni.get_next_parameter() needs to be called before {api} (as in NNI)")


def report_intermediate_result(metric: Any) -> None:
    """Report a result during training (NNI's ``nni.report_intermediate_result``) as a Tune result.

    Args:
        metric: a number, or a dict holding the trial's metric (``"default"`` unless set otherwise).

    Raises:
        RuntimeError: called before :func:`get_next_parameter` in a trial (as NNI asserts).
        TypeError, ValueError: the metric is not a finite number (see the module doc).
    """
    global _standalone_seq
    _check_entered("report_intermediate_result")
    if _context is None:
        _logger.info("Intermediate result: %s  (Index %s)", metric, _standalone_seq)
        _standalone_seq += 1
        return
    _require_parameters("report_intermediate_result")
    result = _result(metric, "report_intermediate_result")
    result.update(nni_final=False, nni_sequence=_context.intermediate)
    _context.intermediate += 1
    _report(result)


def report_final_result(metric: Any) -> None:
    """Report the trial's final result (NNI's ``nni.report_final_result``) as a Tune result.

    The tuner receives the trial's last reported result, so report the final result last.

    Args:
        metric: a number, or a dict holding the trial's metric (``"default"`` unless set otherwise).

    Raises:
        RuntimeError: called before :func:`get_next_parameter` in a trial (as NNI asserts).
        TypeError, ValueError: the metric is not a finite number.
    """
    _check_entered("report_final_result")
    if _context is None:
        _logger.info("Final result: %s", metric)
        return
    _require_parameters("report_final_result")
    result = _result(metric, "report_final_result")
    result.update(nni_final=True, nni_sequence=0)
    _context.finals += 1
    _report(result)


def _parameters_of(config: Mapping[str, Any], search_space: Mapping[str, Any] | None) -> Any:
    if search_space is not None:
        from searchers.tune import from_tune_config

        return from_tune_config(config, search_space)
    if isinstance(config, Mapping) and isinstance(config.get(_ARCH_KEY), Mapping):
        return dict(config[_ARCH_KEY])
    return {k: v for k, v in config.items() if k != PARAMETER_ID_KEY} if isinstance(config, Mapping) else config


def _tune_ids() -> tuple[str, str]:
    if "ray" not in sys.modules:
        return "STANDALONE", "STANDALONE"
    try:
        from ray import tune
        from ray.train._internal.session import get_session

        if get_session() is None:  # ray imported, but not in a Tune trial
            return "STANDALONE", "STANDALONE"
        context = tune.get_context()
        return context.get_trial_id() or "STANDALONE", context.get_experiment_name() or "STANDALONE"
    except Exception:  # noqa: BLE001 - outside a Tune session
        return "STANDALONE", "STANDALONE"


@contextlib.contextmanager
def trial_context(
    config: Mapping[str, Any],
    *,
    metric: str = "default",
    search_space: Mapping[str, Any] | None = None,
    report: Callable[[dict], None] | None = None,
) -> Iterator[TrialContext]:
    """Enter a trial: within the block, the NNI trial API talks to this Tune trial.

    Args:
        config: the Tune trial's config.
        metric: the result key a plain number is reported under (the experiment's metric).
        search_space: the nnictl space; when given, the config is read with
            :func:`searchers.tune.from_tune_config` (configs of Tune's own searchers over
            :func:`searchers.tune.to_tune_space` too). Without it, the parameters are
            ``config["arch"]`` when present (:class:`searchers.tune.TunerSearcher`), else the config.
        report: called with each result dict instead of ``ray.tune.report``.

    Yields:
        The :class:`TrialContext`.
    """
    global _context
    check("metric", metric, "str", error=ConfigTypeError)
    trial_id, experiment_id = _tune_ids()
    parameter_id = config.get(PARAMETER_ID_KEY) if isinstance(config, Mapping) else None
    context = TrialContext(
        parameters=_parameters_of(config, search_space),
        metric=metric,
        report=report,
        parameter_id=parameter_id,
        trial_id=trial_id,
        experiment_id=experiment_id,
    )
    previous, _context = _context, context
    try:
        yield context
    finally:
        _context = previous


def with_nni_trial(
    fn: Callable[..., Any], *, metric: str = "default", search_space: Mapping[str, Any] | None = None
) -> Callable[[dict], Any]:
    """A Tune function trainable that runs ``fn`` inside :func:`trial_context`.

    Args:
        fn: ``fn(config)``, or ``fn()`` (an NNI script's ``main``) when it takes no argument.
        metric: the experiment's metric (a plain number reported by ``fn`` goes under it).
        search_space: see :func:`trial_context`.

    Returns:
        ``trainable(config)`` for ``tune.Tuner``.
    """
    try:
        takes_config = any(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            for p in inspect.signature(fn).parameters.values()
        )
    except (TypeError, ValueError):
        takes_config = True

    def trainable(config: dict) -> Any:
        with trial_context(config, metric=metric, search_space=search_space):
            return fn(config) if takes_config else fn()

    functools.update_wrapper(trainable, fn, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    return trainable
