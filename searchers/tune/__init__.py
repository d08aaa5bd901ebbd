"""Ray Tune adapter: NNI-protocol tuners as Tune searchers, and NAS spaces as Tune spaces.

Every name is importable from ``searchers.tune``; each lives in the module that holds its job:

- :mod:`searchers.tune.searcher`: :class:`TunerSearcher` wraps a :class:`searchers.Tuner` as a
  ``ray.tune.search.Searcher``; every trial's config is ``{"arch": parameters}``.
- :mod:`searchers.tune.spaces`: :func:`to_tune_space` turns the nnictl space into a Tune
  ``param_space`` so that Tune's own searchers (``BasicVariantGenerator``, ``OptunaSearch`` ...)
  search it; :func:`from_tune_config` turns a trial's config back into the parameter form (it
  accepts TunerSearcher configs too).
- :mod:`searchers.tune.loading`: :func:`load_searcher` builds either from an import path.

Importing this package imports ``ray`` (``import searchers`` alone does not).
"""

from searchers.errors import SearcherLoadError
from searchers.tune.loading import load_searcher
from searchers.tune.searcher import TunerSearcher
from searchers.tune.spaces import ARCH_KEY, from_tune_config, to_tune_space

__all__ = ["ARCH_KEY", "TunerSearcher", "to_tune_space", "from_tune_config", "load_searcher", "SearcherLoadError"]
