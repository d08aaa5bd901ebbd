"""Classic NAS: NNI's ``nni.nas.pytorch.classic_nas`` workflow, with Ray Tune trials instead of nnictl.

In classic NAS every trial trains one architecture from scratch: a tuner proposes the architecture, the
trial script builds its model, calls ``get_and_apply_next_architecture(model)`` and reports its
accuracy. An NNI trial script runs here with only its imports changed::

    import raynas.nas.classic_nas as nni  # was: import nni
    from raynas.nas import LayerChoice, InputChoice  # was: from nni.nas.pytorch.mutables import ...
    from raynas.nas.classic_nas import get_and_apply_next_architecture  # was: from nni.nas.pytorch.classic_nas ...

This module is the trial's half, the ``nni`` a script imports: :func:`get_and_apply_next_architecture`
(NNI's three modes: with ``NNI_GEN_SEARCH_SPACE`` set it writes the search space there and exits; in a
trial it applies the trial's proposed architecture; run standalone it applies the first candidate(s)
and warns) and NNI's trial API (:func:`get_next_parameter`, :func:`report_intermediate_result`,
:func:`report_final_result`, ..., whose home is :mod:`raynas.nas.trial`; here as ``nni.*``).

The driver's half (``nnictl ss_gen`` and the Tune run of the script, ``raynas classic-nas``) is
:mod:`raynas.nas.classic_launch`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raynas._io import write_json_atomic
from raynas.nas import trial as _trial
from raynas.nas.mutator import Mutator
from raynas.nas.space import generate_search_space, to_decisions
from raynas.nas.trial import (  # NNI's trial API, as ``nni.*`` for a script importing this module as nni
    get_current_parameter,
    get_experiment_id,
    get_next_parameter,
    get_sequence_id,
    get_trial_id,
    report_final_result,
    report_intermediate_result,
    trial_context,
    with_nni_trial,
)
from searchers.space import LAYER_CHOICE, SearchSpaceError, parse_search_space

__all__ = [
    "NNI_GEN_SEARCH_SPACE",
    "ClassicMutator",
    "first_candidates",
    "get_and_apply_next_architecture",
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_sequence_id",
    "get_trial_id",
    "report_final_result",
    "report_intermediate_result",
    "trial_context",
    "with_nni_trial",
]

#: set to a file path, ``get_and_apply_next_architecture`` writes the search space there and exits (NNI's name).
NNI_GEN_SEARCH_SPACE = "NNI_GEN_SEARCH_SPACE"

logger = logging.getLogger(__name__)


def first_candidates(search_space: Mapping[str, Any]) -> dict:
    """NNI's standalone choice: the first candidate of each layer choice, the first ``n_chosen``
    candidates of each input choice (all of them when ``n_chosen`` is null), in parameter form.

    Args:
        search_space: the nnictl space.

    Returns:
        ``{key: {"_value": ..., "_idx": ...}}``.
    """
    chosen = {}
    for key, choice in parse_search_space(search_space).items():
        if choice.type == LAYER_CHOICE:
            chosen[key] = {"_value": choice.candidates[0], "_idx": 0}
        else:
            n = choice.length if choice.n_chosen is None else choice.n_chosen
            chosen[key] = {"_value": list(choice.candidates[:n]), "_idx": list(range(n))}
    return chosen


class ClassicMutator(Mutator):
    """Applies one architecture to a model: the trial's (from the tuner), or the first candidates.

    As NNI's ``ClassicMutator``, it keeps every candidate in the model (its ``state_dict`` keys are the
    supernet's) and runs only the chosen ones.

    Args:
        model: the model holding LayerChoice / InputChoice mutables.

    Raises:
        SearchSpaceError: the trial's architecture does not fit the model (the message names the key).
        RuntimeError: ``get_next_parameter()`` was already called in this trial (NNI gives the
            parameters once), or this is a Tune trial that raynas did not enter.
    """

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._search_space = generate_search_space(self)
        path = os.environ.get(NNI_GEN_SEARCH_SPACE)
        if path:  # dry run (nnictl ss_gen / raynas ss-gen --trial-command): write the space, end the script
            write_json_atomic(path, self._search_space)
            sys.exit(0)
        if _trial.current_trial() is None and not _trial.in_unentered_tune_trial():
            logger.warning("This is in standalone mode, the chosen are the first one(s).")
            self._chosen_arch = first_candidates(self._search_space)
        else:
            chosen = get_next_parameter()
            if chosen is None:
                raise RuntimeError(
                    "the chosen architecture is None: nni.get_next_parameter() was already called in this trial "
                    "(NNI gives a trial its parameters once; get_and_apply_next_architecture calls it itself)"
                )
            self._chosen_arch = chosen
        try:
            self._decisions = to_decisions(self._chosen_arch, self._search_space)
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"the trial's architecture does not fit the model's search space: {exc}") from None
        self.reset()

    @property
    def search_space(self) -> dict:
        """The model's search space (nnictl JSON)."""
        return dict(self._search_space)

    @property
    def chosen_arch(self) -> dict:
        """The architecture applied, as given (parameter form)."""
        return dict(self._chosen_arch)

    def sample_search(self) -> dict[str, torch.Tensor]:
        return dict(self._decisions)

    def sample_final(self) -> dict[str, torch.Tensor]:
        return dict(self._decisions)


def get_and_apply_next_architecture(model: nn.Module) -> ClassicMutator:
    """Apply the architecture of this trial to ``model`` (NNI's ``get_and_apply_next_architecture``).

    Three modes, as in NNI: with the environment variable ``NNI_GEN_SEARCH_SPACE`` set to a path, write
    the model's search space there (nnictl JSON) and exit the process (``sys.exit(0)``); inside a trial
    (:func:`raynas.nas.classic_launch.run_classic_nas`, :func:`with_nni_trial`), take the trial's architecture from
    :func:`get_next_parameter` and apply it; standalone, apply the first candidate(s) with a warning.

    Args:
        model: the model holding LayerChoice / InputChoice mutables, not yet bound to a mutator.

    Returns:
        The bound :class:`ClassicMutator` (NNI returns nothing; ignoring it is fine).
    """
    return ClassicMutator(model)
