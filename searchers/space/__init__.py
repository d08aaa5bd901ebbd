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
from searchers.space.choice import (
    CHOICE_TYPES,
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    Resolved,
    Selection,
    Weights,
    choice_exported,
    choice_parameter,
)
from searchers.space.forms import (
    canonical_hash,
    from_index_form,
    parse_search_space,
    resolve_architecture,
    to_exported,
    to_index_form,
    to_parameters,
)
from searchers.space.sampling import (
    choice_size,
    choice_values,
    crossover_architectures,
    enumerate_architectures,
    mutate_architecture,
    neighbour_choice,
    sample_architecture,
    sample_choice,
    space_size,
)

__all__ = [
    "LAYER_CHOICE",
    "INPUT_CHOICE",
    "CHOICE_TYPES",
    "SearchSpaceError",
    "Choice",
    "Selection",
    "Weights",
    "Resolved",
    "parse_search_space",
    "resolve_architecture",
    "to_parameters",
    "to_exported",
    "to_index_form",
    "from_index_form",
    "canonical_hash",
    "choice_size",
    "choice_parameter",
    "choice_exported",
    "choice_values",
    "space_size",
    "sample_choice",
    "neighbour_choice",
    "sample_architecture",
    "mutate_architecture",
    "crossover_architectures",
    "enumerate_architectures",
]

# the old private names, kept for code written against earlier versions
_parameter, _choice_values = choice_parameter, choice_values
