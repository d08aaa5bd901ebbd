"""NNI-protocol tuners and their Ray Tune adapter. Torch-free: numpy only."""

from searchers.space import (
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    SearchSpaceError,
    Selection,
    Weights,
    canonical_hash,
    from_index_form,
    parse_search_space,
    resolve_architecture,
    to_exported,
    to_index_form,
    to_parameters,
)

__all__ = [
    "INPUT_CHOICE",
    "LAYER_CHOICE",
    "Choice",
    "SearchSpaceError",
    "Selection",
    "Weights",
    "canonical_hash",
    "from_index_form",
    "parse_search_space",
    "resolve_architecture",
    "to_exported",
    "to_index_form",
    "to_parameters",
]
