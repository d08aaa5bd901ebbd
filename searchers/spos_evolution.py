"""``SPOSEvolution``: NNI v1.9's SPOS evolution tuner (``nni.nas.pytorch.spos.SPOSEvolution``), torch-free.

It searches the LayerChoices of a trained SPOS supernet in epochs (generations) of
``num_population`` candidates: epoch 0 is random; each later epoch keeps the ``num_select`` best
candidates of the one before, breeds ``num_mutation`` mutants (each key redrawn with
probability ``m_prob``) and ``num_crossover`` crossovers from them, and fills up with random
candidates. A candidate is never proposed twice (:meth:`SPOSEvolution._is_legal`, the hook NNI's
``EvolutionWithFlops`` example overrides to add a FLOPs limit). The next epoch starts when every
candidate of this one has ended; after ``max_epochs`` no more are proposed.

At each epoch's start the candidates (epoch 0) or the survivors are written, as NNI does, to
``<checkpoint_dir>/<epoch>_<i>.json`` as one-hot bool lists (files ``apply_fixed_architecture``
reads).

It speaks both of NNI's protocols: given an ``st_callback`` (NNI's dispatcher), it sends
parameters through it and ``generate_multiple_parameters`` returns ``[]``, as NNI's does; without
one (:class:`searchers.tune.TunerSearcher`), ``generate_multiple_parameters`` returns the
candidates it can bind now (``[]`` while the epoch's last results are awaited).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from searchers.base import NoMoreTrialError, Tuner, metric_value
from searchers.errors import ConfigError
from searchers.space import INPUT_CHOICE, LAYER_CHOICE, SearchSpaceError

__all__ = ["SPOSEvolution"]

_logger = logging.getLogger(__name__)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"SPOSEvolution {name} must be an integer >= 0, got {value!r}")
    return int(value)


class SPOSEvolution(Tuner):
    """NNI's SPOS evolution (the arguments and defaults are NNI's; ``seed`` and ``checkpoint_dir``
    are raynas' keyword-only extras).

    Args:
        max_epochs: epochs (generations) to run.
        num_select: survivors of each epoch (the best rewards).
        num_population: candidates per epoch.
        m_prob: probability of redrawing each key of a mutant.
        num_crossover: crossovers per epoch.
        num_mutation: mutants per epoch.
        seed: seed of the tuner's ``numpy.random.RandomState`` (NNI: 0).
        checkpoint_dir: where the candidates of each epoch are written (NNI: ``checkpoints``).

    Raises:
        ConfigError: ``num_population < num_select``, or a count is not an integer >= 0.
    """

    optimize_mode = "maximize"

    def __init__(
        self,
        max_epochs: int = 20,
        num_select: int = 10,
        num_population: int = 50,
        m_prob: float = 0.1,
        num_crossover: int = 25,
        num_mutation: int = 25,
        *,
        seed: int = 0,
        checkpoint_dir: str | os.PathLike = "checkpoints",
    ) -> None:
        self.max_epochs = _count("max_epochs", max_epochs)
        self.num_select = _count("num_select", num_select)
        self.num_population = _count("num_population", num_population)
        self.num_crossover = _count("num_crossover", num_crossover)
        self.num_mutation = _count("num_mutation", num_mutation)
        if self.num_population < self.num_select:
            raise ConfigError(
                f"SPOSEvolution needs num_population >= num_select, got num_population={num_population!r}, "
                f"num_select={num_select!r}"
            )
        if isinstance(m_prob, bool) or not isinstance(m_prob, (int, float)) or not 0.0 <= m_prob <= 1.0:
            raise ConfigError(f"SPOSEvolution m_prob must be a probability in [0, 1], got {m_prob!r}")
        self.m_prob = float(m_prob)
        self.checkpoint_dir = os.fspath(checkpoint_dir)
        self.epoch = 0
        self.candidates: list[dict] = []
        self.random_state = np.random.RandomState(seed)
        self._search_space: dict | None = None
        self._to_evaluate_queue: deque[dict] = deque()
        self._sending_parameter_queue: deque[Any] = deque()
        self._pending_result_ids: set[Any] = set()
        self._reward_dict: dict[str, float] = {}
        self._id2candidate: dict[Any, dict] = {}
        self._st_callback: Callable[[Any, dict], None] | None = None

    # -- NNI's tuner protocol -------------------------------------------------------------------

    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        """Take the space and generate epoch 0.

        Raises:
            SearchSpaceError: the space has an input choice (NNI's SPOS evolution has none).
        """
        for key, spec in search_space.items():
            if spec.get("_type") == INPUT_CHOICE:
                raise SearchSpaceError(
                    f"SPOSEvolution searches layer choices only (as NNI's), got input choice {key!r}"
                )
            if spec.get("_type") != LAYER_CHOICE:
                raise SearchSpaceError(
                    f"SPOSEvolution needs layer_choice entries, got {spec.get('_type')!r} for {key!r}"
                )
        self._search_space = {k: dict(v) for k, v in search_space.items()}
        self._next_round()

    def generate_multiple_parameters(self, parameter_id_list: Iterable[Any], **kwargs: Any) -> list[dict]:
        """Bind the ids to waiting candidates (see the module docstring for the two protocols)."""
        if "st_callback" in kwargs and self._st_callback is None:
            self._st_callback = kwargs["st_callback"]
        if self._st_callback is not None:
            self._sending_parameter_queue.extend(parameter_id_list)
            self._bind_and_send_parameters()
            return []
        out = []
        for parameter_id in parameter_id_list:
            if not self._to_evaluate_queue:
                break
            out.append(self._bind(parameter_id))
        return out

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """One waiting candidate.

        Raises:
            NoMoreTrialError: none is waiting now (the epoch awaits results, or the search is over).
        """
        proposed = self.generate_multiple_parameters([parameter_id], **kwargs)
        if not proposed:
            raise NoMoreTrialError("SPOSEvolution has no candidate waiting")
        return proposed[0]

    def receive_trial_result(self, parameter_id: Any, parameters: dict, value: Any, **kwargs: Any) -> None:
        """Record a candidate's reward (results of trials this tuner did not propose are ignored)."""
        if parameter_id not in self._id2candidate:
            _logger.info("Ignoring the result of trial %s, which SPOSEvolution did not propose.", parameter_id)
            return
        value = metric_value(value)
        _logger.info("Candidate %s, reported reward %f", parameter_id, value)
        self._reward_dict[self._hashcode(self._id2candidate[parameter_id])] = value

    def trial_end(self, parameter_id: Any, success: bool, **kwargs: Any) -> None:
        """A candidate's trial ended (a failed one keeps reward 0); the last one starts the next epoch."""
        self._pending_result_ids.discard(parameter_id)
        if not self._pending_result_ids and not self._to_evaluate_queue:
            self._next_round()
            if self._st_callback is not None:
                self._bind_and_send_parameters()

    # -- the epochs -----------------------------------------------------------------------------

    def _next_round(self) -> None:
        _logger.info("Epoch %d, generating...", self.epoch)
        if self.epoch == 0:
            self._get_random_population()
            self.export_results(self.candidates)
        else:
            best_candidates = self._select_top_candidates()
            self.export_results(best_candidates)
            if self.epoch >= self.max_epochs:
                return
            self.candidates = self._get_mutation(best_candidates) + self._get_crossover(best_candidates)
            self._get_random_population()
        self.epoch += 1

    def _random_candidate(self) -> dict:
        chosen = {}
        for key, val in self._search_space.items():
            choices = val["_value"]
            index = int(self.random_state.randint(len(choices)))
            chosen[key] = {"_value": choices[index], "_idx": index}
        return chosen

    def _add_to_evaluate_queue(self, cand: dict) -> None:
        _logger.info("Generate candidate %s, adding to eval queue.", self._get_architecture_repr(cand))
        self._reward_dict[self._hashcode(cand)] = 0.0
        self._to_evaluate_queue.append(cand)

    def _get_random_population(self) -> None:
        # NNI's loop: it would spin for ever on a space smaller than num_population; stop when
        # no new candidate turns up in many draws
        misses = 0
        while len(self.candidates) < self.num_population and misses < 100 * max(self.num_population, 1):
            cand = self._random_candidate()
            if self._is_legal(cand):
                self._add_to_evaluate_queue(cand)
                self.candidates.append(cand)
                misses = 0
            else:
                misses += 1

    def _get_crossover(self, best: list[dict]) -> list[dict]:
        result: list[dict] = []
        for _ in range(10 * self.num_crossover):
            if not best or len(result) >= self.num_crossover:
                break
            p1 = best[self.random_state.randint(len(best))]
            p2 = best[self.random_state.randint(len(best))]
            cand = {k: p1[k] if self.random_state.randint(2) == 0 else p2[k] for k in p1}
            if self._is_legal(cand):
                result.append(cand)
                self._add_to_evaluate_queue(cand)
        _logger.info("Found %d architectures with crossover.", len(result))
        return result

    def _get_mutation(self, best: list[dict]) -> list[dict]:
        result: list[dict] = []
        for _ in range(10 * self.num_mutation):
            if not best or len(result) >= self.num_mutation:
                break
            cand = dict(best[self.random_state.randint(len(best))])
            draws = self.random_state.random_sample(len(cand))
            for s, k in zip(draws, list(cand)):
                if s < self.m_prob:
                    choices = self._search_space[k]["_value"]
                    index = int(self.random_state.randint(len(choices)))
                    cand[k] = {"_value": choices[index], "_idx": index}
            if self._is_legal(cand):
                result.append(cand)
                self._add_to_evaluate_queue(cand)
        _logger.info("Found %d architectures with mutation.", len(result))
        return result

    def _get_architecture_repr(self, cand: dict) -> str:
        return re.sub(r"\".*?\": \{\"_idx\": (\d+), \"_value\": \".*?\"\}", r"\1", self._hashcode(cand))

    def _is_legal(self, cand: dict) -> bool:
        """Whether ``cand`` may be proposed (not proposed before); override to add rules."""
        return self._hashcode(cand) not in self._reward_dict

    def _select_top_candidates(self) -> list[dict]:
        rewards = [self._reward_dict[self._hashcode(c)] for c in self.candidates]
        _logger.info("All candidate rewards: %s", rewards)
        order = sorted(range(len(self.candidates)), key=lambda i: rewards[i], reverse=True)[: self.num_select]
        result = [self.candidates[i] for i in order]
        _logger.info("Best candidate rewards: %s", [rewards[i] for i in order])
        return result

    @staticmethod
    def _hashcode(d: Mapping[str, Any]) -> str:
        return json.dumps(d, sort_keys=True)

    def _bind(self, parameter_id: Any) -> dict:
        parameters = self._to_evaluate_queue.popleft()
        self._id2candidate[parameter_id] = parameters
        self._pending_result_ids.add(parameter_id)
        _logger.info("Send parameter [%s] %s.", parameter_id, self._get_architecture_repr(parameters))
        return parameters

    def _bind_and_send_parameters(self) -> list[dict]:
        result = []
        while self._sending_parameter_queue and self._to_evaluate_queue:
            parameter_id = self._sending_parameter_queue.popleft()
            parameters = self._bind(parameter_id)
            result.append(parameters)
            self._st_callback(parameter_id, parameters)
        return result

    def export_results(self, result: list[dict]) -> None:
        """Write each candidate to ``<checkpoint_dir>/<epoch>_<i>.json`` as one-hot bool lists."""
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        for i, cand in enumerate(result):
            converted = {
                key: [k == val["_idx"] for k in range(len(self._search_space[key]["_value"]))]
                for key, val in cand.items()
            }
            path = os.path.join(self.checkpoint_dir, "%03d_%03d.json" % (self.epoch, i))
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w") as fp:
                json.dump(converted, fp)
            os.replace(tmp, path)
