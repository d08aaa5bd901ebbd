"""Restoring a tuner that keeps no checkpoint: :class:`CallLog` records a driver's calls and replays them.

NNI makes ``save_checkpoint`` optional; a tuner that leaves it out returns ``None``. A driver that
must resume such a tuner (:class:`searchers.tune.TunerSearcher` under ``Tuner.restore``) records
every call it makes into a log, saves the log where the checkpoint would be, and replays it into a
fresh tuner of the same class and arguments (torch-free).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from searchers.base import NoMoreTrialError
from searchers.codec import hashable_id
from searchers.errors import CheckpointError

if TYPE_CHECKING:
    from searchers.base import Tuner

__all__ = ["CallLog"]


class CallLog:
    """The calls a driver made to a tuner, in order, as JSON-able records; replayable.

    A tuner that keeps no checkpoint (``save_checkpoint()`` returns ``None``) is restored by
    replaying the log into a fresh tuner of the same class and constructor arguments: the fresh
    tuner sees the same ``generate_parameters`` / ``receive_trial_result`` / ``trial_end`` /
    ``import_data`` calls in the same order, so a seeded, deterministic tuner ends in the very
    state the original had (the same next proposals); any tuner at least learns every result.

    Args:
        records: records of an earlier log (``log.records``), e.g. read back from JSON.
    """

    def __init__(self, records: Iterable[Sequence[Any]] | None = None) -> None:
        self.records: list[list] = [list(r) for r in records or []]
        for i, record in enumerate(self.records):
            if not record or record[0] not in ("generate", "result", "end", "import"):
                raise CheckpointError(f"call log record {i} is not a tuner call: {record!r}")

    def generated(self, parameter_id: Any, parameters: Mapping[str, Any]) -> None:
        """Record that ``generate_parameters(parameter_id)`` returned ``parameters``."""
        self.records.append(["generate", parameter_id, copy.deepcopy(dict(parameters))])

    def received(
        self, parameter_id: Any, parameters: Mapping[str, Any], value: Any, *, customized: bool = False
    ) -> None:
        """Record a ``receive_trial_result`` call."""
        self.records.append(["result", parameter_id, copy.deepcopy(dict(parameters)), value, bool(customized)])

    def ended(self, parameter_id: Any, success: bool) -> None:
        """Record a ``trial_end`` call."""
        self.records.append(["end", parameter_id, bool(success)])

    def imported(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Record an ``import_data`` call."""
        self.records.append(["import", copy.deepcopy([dict(r) for r in data])])

    def clear(self) -> None:
        """Forget every record (after a checkpoint made them unnecessary)."""
        self.records.clear()

    @property
    def results(self) -> int:
        """How many results (received or imported) the log holds."""
        return sum(1 if r[0] == "result" else len(r[1]) if r[0] == "import" else 0 for r in self.records)

    def replay(self, tuner: Tuner) -> None:
        """Make the recorded calls on ``tuner`` (fresh, with its search space set), in order.

        A replayed ``generate_parameters`` goes through ``generate_multiple_parameters([id])``
        (the tuner's own proposal is discarded: the recorded parameters are what ran, and they
        reach the tuner with the result); ``NoMoreTrialError`` there is ignored.

        Args:
            tuner: the fresh tuner.

        Raises:
            RuntimeError: a replayed call raised (the message names the call and the record).
        """
        for i, record in enumerate(self.records):
            kind = record[0]
            try:
                if kind == "generate":
                    try:
                        tuner.generate_multiple_parameters([hashable_id(record[1])])
                    except NoMoreTrialError:
                        pass
                elif kind == "result":
                    extras = {"customized": True} if record[4] else {}
                    tuner.receive_trial_result(hashable_id(record[1]), copy.deepcopy(record[2]), record[3], **extras)
                elif kind == "end":
                    tuner.trial_end(hashable_id(record[1]), record[2])
                else:
                    tuner.import_data(copy.deepcopy(record[1]))
            except Exception as exc:
                raise RuntimeError(
                    f"replaying call {i} ({kind} of parameter id {record[1] if kind != 'import' else '-'!r}) "
                    f"into a fresh {type(tuner).__name__} failed: {type(exc).__name__}: {exc}"
                ) from exc
