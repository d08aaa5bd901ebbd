"""The ``nnictl ss_gen`` search-space format and the architecture forms it admits (torch-free).

A search space maps each mutable key to one entry::

    {"op0":   {"_type": "layer_choice", "_value": ["conv3", "conv5"]},
     "skip1": {"_type": "input_choice",
               "_value": {"candidates": ["stem", "op0"], "n_chosen": null}}}

This package's names are all importable from ``searchers.space``; each lives in the module that
holds its one job:

- :mod:`searchers.space.choice`: one key (:class:`Choice`), its value in every form a user may
  write, resolved to a :class:`Selection` or :class:`Weights`;
- :mod:`searchers.space.forms`: a whole space and architecture: :func:`parse_search_space`,
  :func:`resolve_architecture` and the forms it is written in (parameters, exported, index, hash);
- :mod:`searchers.space.sampling`: sizes, random draws, mutation, crossover and enumeration, in
  index form.
"""

from searchers.errors import SearchSpaceError
from searchers.space import choice, forms, sampling

# each module's __all__ is the one list of its public names; this package re-exports them all
from searchers.space.choice import *  # noqa: F403
from searchers.space.forms import *  # noqa: F403
from searchers.space.sampling import *  # noqa: F403

__all__ = ["SearchSpaceError", *choice.__all__, *forms.__all__, *sampling.__all__]

# the old private names, kept for code written against earlier versions
_parameter, _choice_values = choice.choice_parameter, sampling.choice_values
