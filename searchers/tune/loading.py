"""Building a Ray Tune searcher from an import path: :func:`load_searcher`.

The path names either an NNI-protocol tuner (a :class:`searchers.Tuner` subclass, wrapped in a
:class:`~searchers.tune.searcher.TunerSearcher`) or a Tune ``Searcher`` subclass (given the
search space in Tune's form, :func:`~searchers.tune.spaces.to_tune_space`). Constructor keywords
are checked against the class's signature first, so a misspelt one is a one-line error.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ray.tune.search import Searcher

from searchers.base import Tuner
from searchers.checks import check_tune_mode
from searchers.errors import ConfigError, SearcherLoadError
from searchers.imports import import_object
from searchers.signatures import check_keywords, names_keyword
from searchers.tune.searcher import TunerSearcher
from searchers.tune.spaces import to_tune_space

__all__ = ["load_searcher", "searcher_classes"]


def searcher_classes(module: ModuleType) -> list[str]:
    """The public, concrete tuner and searcher classes of ``module`` (listed when a name is missing)."""
    return [
        n
        for n, v in vars(module).items()
        if isinstance(v, type)
        and issubclass(v, (Tuner, Searcher))
        and not inspect.isabstract(v)
        and not n.startswith("_")
        and v is not Searcher
    ]


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
    ``mode`` when its constructor names one, :func:`~searchers.signatures.names_keyword`, and
    ``kwargs`` does not set it) and wrapped in
    :class:`TunerSearcher`; its trials get ``{"arch": parameters}``. A ``ray.tune.search.Searcher``
    subclass is built with ``metric``, ``mode``, ``**kwargs`` and ``space=to_tune_space(...)`` when
    it takes ``space`` (else the space goes through ``set_search_properties``); its trials get
    :func:`to_tune_space` configs, which :func:`~searchers.tune.spaces.from_tune_config` turns
    into parameters.

    Args:
        path: ``"package.module:Name"``.
        search_space: the nnictl JSON.
        metric: the result key to optimize.
        mode: ``"max"`` or ``"min"``.
        seed: passed as ``seed`` to a class whose constructor names one (else ignored).
        **kwargs: constructor arguments of the class.

    Returns:
        The searcher.

    Raises:
        SearcherLoadError: bad path, import failure, missing name, or an object that is neither
            kind (the message says what was found).
        ConfigError: ``mode`` is not ``"max"`` or ``"min"``, or ``kwargs`` set ``space``.
        ConfigTypeError: ``kwargs`` do not fit the class's constructor (the message lists the
            keywords it takes).
    """
    check_tune_mode(mode)
    obj = import_object(
        path,
        what="searcher",
        error=SearcherLoadError,
        offers=searcher_classes,
        offers_label="tuners and searchers there",
    )
    if seed is not None and isinstance(obj, type) and names_keyword(obj, "seed"):
        kwargs["seed"] = seed
    if isinstance(obj, type) and issubclass(obj, Tuner):
        return _wrap_tuner(obj, path, search_space=search_space, metric=metric, mode=mode, kwargs=kwargs)
    if isinstance(obj, type) and issubclass(obj, Searcher):
        return _build_tune_searcher(obj, path, search_space=search_space, metric=metric, mode=mode, kwargs=kwargs)
    found = f"class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else f"{type(obj).__name__} {obj!r}"
    raise SearcherLoadError(f"{path!r} must name a searchers.Tuner or ray.tune.search.Searcher subclass, found {found}")


def _build(cls: type, path: str, kwargs: dict[str, Any]) -> Any:
    check_keywords(cls, kwargs, what=f"searcher {path!r}")
    return cls(**kwargs)


def _wrap_tuner(
    cls: type, path: str, *, search_space: Mapping[str, Any], metric: str, mode: str | None, kwargs: dict[str, Any]
) -> TunerSearcher:
    if "optimize_mode" not in kwargs and names_keyword(cls, "optimize_mode") and mode is not None:
        kwargs["optimize_mode"] = "maximize" if mode == "max" else "minimize"
    return TunerSearcher(_build(cls, path, kwargs), search_space=search_space, metric=metric, mode=mode)


def _build_tune_searcher(
    cls: type, path: str, *, search_space: Mapping[str, Any], metric: str, mode: str | None, kwargs: dict[str, Any]
) -> Searcher:
    tune_space = to_tune_space(search_space)
    if "space" in kwargs:
        raise ConfigError(
            f"keyword argument 'space' of searcher {path!r} is set by raynas (the experiment's search space, "
            f"as to_tune_space writes it); remove it, got {kwargs['space']!r}"
        )
    if names_keyword(cls, "space"):
        return _build(cls, path, dict(kwargs, space=tune_space, metric=metric, mode=mode))
    searcher = _build(cls, path, dict(kwargs, metric=metric, mode=mode))
    if not searcher.set_search_properties(metric, mode, tune_space):
        raise SearcherLoadError(f"searcher {path!r} did not accept the search space via set_search_properties")
    return searcher
