"""RandomTuner: uniform random architectures, never the same one twice."""

from __future__ import annotations

from typing import Any

from searchers.arch_tuner import ArchTuner
from searchers.base import NoMoreTrialError

__all__ = ["RandomTuner"]


class RandomTuner(ArchTuner):
    """Propose uniformly random architectures without repeats (the reference tuner).

    Every key is drawn uniformly among its exact values (any subset for ``n_chosen=None``);
    an architecture already proposed, received or imported is drawn again. Once the space is
    exhausted, ``generate_parameters`` raises :class:`~searchers.base.NoMoreTrialError`.

    Args:
        seed: seed of the tuner's ``numpy.random.Generator`` (``None``: fresh entropy).
    """

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed, optimize_mode=None)

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """Propose a random architecture not proposed before.

        Args:
            parameter_id: the trial's id.
            **kwargs: ignored.

        Returns:
            ``{key: {"_value": ..., "_idx": ...}}``.

        Raises:
            NoMoreTrialError: every architecture of the space has been seen.
        """
        self._need_space()
        arch = self._random_unseen()
        if arch is None:
            raise NoMoreTrialError(f"all {self._size} architectures of the search space have been proposed")
        return self._propose(parameter_id, arch)
