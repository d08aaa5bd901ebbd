"""NAS spaces as Ray Tune spaces: :func:`to_tune_space` and back, :func:`from_tune_config` (torch-free).

Tune's own searchers (``BasicVariantGenerator``, ``OptunaSearch`` ...) search the Tune form of an
nnictl space; a trial's config is read back into the tuner parameter form. Every trial config
holds the architecture under :data:`ARCH_KEY`, whichever searcher suggested it. ``ray`` is
imported only by :func:`to_tune_space`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from searchers.space import INPUT_CHOICE, LAYER_CHOICE, Choice, SearchSpaceError, parse_search_space, to_parameters

__all__ = ["ARCH_KEY", "COMBINATION_LIMIT", "to_tune_space", "from_tune_config"]

ARCH_KEY = "arch"  # the key of a trial config that holds the architecture
COMBINATION_LIMIT = 100_000  # the most combinations one input choice may offer as a Tune categorical


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
            if math.comb(n, c.n_chosen) > COMBINATION_LIMIT:
                raise SearchSpaceError(
                    f"input choice has {math.comb(n, c.n_chosen)} combinations (limit {COMBINATION_LIMIT}) "
                    f"for key {key!r}"
                )
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
