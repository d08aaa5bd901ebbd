"""Run an experiment's phases in order (space, supernet, search, retrain, then the report),
skipping those an interrupted run already finished."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from raynas._io import write_json_atomic
from raynas.experiment.config import ConfigError, ExperimentConfig, build_config, load_config
from raynas.experiment.directory import PHASES, ExperimentDir, ExperimentDirError
from raynas.experiment.phases import PHASE_RUNNERS
from raynas.experiment.results import leaderboard, top_architectures
from raynas.report.console import ConsoleProgress, Progress
from raynas.train.placement import check_experiment
from searchers.errors import RaynasError

__all__ = [
    "Experiment",
    "ExperimentExistsError",
    "SpaceMismatchError",
    "init_ray",
    "leaderboard",
    "top_architectures",
]

Log = Callable[[str], None]


class ExperimentExistsError(ExperimentDirError):
    """A new run would write into an existing experiment directory."""


class SpaceMismatchError(RaynasError, ValueError):
    """The model's search space differs from the one stored in the experiment directory."""


def init_ray(address: str | None) -> None:
    """Connect to ``address``, to the cluster of a Ray job (``RAY_ADDRESS``), or start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)  # inside `ray job submit`: the job's own cluster
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def _space_diff(stored: Mapping, actual: Mapping) -> str | None:
    if stored == actual:
        return None
    for key in sorted(set(stored) | set(actual)):
        if stored.get(key) != actual.get(key):
            return f"key {key!r}: stored {stored.get(key)!r}, model {actual.get(key)!r}"
    return "the spaces differ"  # pragma: no cover


class Experiment:
    """One experiment: its config, directory and the factories every phase uses.

    Build it with :meth:`create` (a new directory) or :meth:`resume` (an existing one); both
    check everything a user can get wrong before anything is written.
    """

    def __init__(self, config: ExperimentConfig, xdir: ExperimentDir, *, log: Log = print, resumed: bool = False):
        self.config = config
        self.dir = xdir
        self.log = log
        self.resumed = resumed
        #: where phase headers and progress go (``run(progress=...)`` replaces it for the run)
        self.progress: Progress = ConsoleProgress(write=log)
        from raynas.experiment.checks import check_objective
        from raynas.train.data import DataSpec, check_data
        from raynas.train.resolve import resolve_factory

        d = config.data
        self.model_factory = resolve_factory(config.model.factory, config.model.kwargs)
        check_data(d.name, d.kwargs)  # a bad data.name, data.kwargs or missing files fail before anything is written
        # the path travels, not the datasets: every replica and trial builds them itself
        self.data = DataSpec(source=d.name, kwargs=dict(d.kwargs), workers=d.workers, prefetch_factor=d.prefetch_factor)
        self.space = self._check_model()
        check_objective(config, self.model_factory, self.data)

    @classmethod
    def create(cls, config: ExperimentConfig, *, log: Log = print) -> Experiment:
        """A new experiment in ``<storage>/<name>``; refuses an existing experiment directory."""
        xdir = ExperimentDir(config.experiment_dir)
        if xdir.exists():
            raise ExperimentExistsError(
                f"experiment directory {xdir.location!r} already exists; resume it with "
                f"--resume {xdir.location!r} or choose another experiment.name"
            )
        return cls(config, xdir, log=log)

    @classmethod
    def resume(cls, root: str, overrides: Sequence[str] = (), *, log: Log = print) -> Experiment:
        """The experiment in ``root`` with its stored config (plus ``--set`` overrides)."""
        xdir = ExperimentDir.existing(root)
        config = load_config(xdir.config, overrides)
        return cls(config, xdir, log=log, resumed=True)

    def _check_model(self) -> dict:
        from torch import nn

        from raynas.nas.space import generate_search_space

        try:
            model = self.model_factory()
        except TypeError as exc:
            raise ConfigError(f"model.factory {self.config.model.factory!r} failed: {exc}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model.factory {self.config.model.factory!r} returned a {type(model).__name__}, not a torch.nn.Module"
            )
        space = generate_search_space(model)
        if not space:
            raise ConfigError(
                f"model.factory {self.config.model.factory!r} builds a model without LayerChoice or InputChoice"
            )
        if self.dir.search_space.is_file():
            diff = _space_diff(self.dir.read_search_space(), space)
            if diff:
                raise SpaceMismatchError(
                    f"the model does not match the search space stored in {self.dir.location!r} ({diff})"
                )
        return space

    def check_searcher(self) -> None:
        """Build the searcher once, so a bad ``search.searcher`` fails before any work."""
        if self.config.search.num_samples > 0:
            self.searcher()

    def searcher(self, constraint: Callable | None = None) -> Any:
        from raynas.search import build_searcher

        s = self.config.search
        return build_searcher(
            s.searcher,
            space=self.space,
            metric=s.metric,
            mode=s.mode,
            kwargs=s.searcher_kwargs,
            seed=self.config.experiment.seed,
            constraint=constraint,
        )

    # -- phases -------------------------------------------------------------------------------

    def run(
        self,
        *,
        local: bool = False,
        address: str | None = None,
        until: str | None = None,
        resume: bool | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Run every phase not yet done, up to ``until`` (inclusive), then write the reports.

        Args:
            local: every phase in this process, without Ray (``pdb`` works).
            address: the Ray cluster to connect to (default: ``RAY_ADDRESS`` or a local Ray,
                started for you unless Ray is already initialised).
            until: the last phase to run (``space``, ``supernet``, ``search``, ``retrain``).
            resume: continue the phases' own progress (Tune experiments, checkpoints); default:
                whether this experiment was resumed.
            progress: where phase headers and progress go (default: lines through ``log``;
                ``raynas search`` passes a :class:`~raynas.report.ConsoleProgress` with live bars).
        """
        if until is not None and until not in PHASES:
            raise ConfigError(f"until must be one of {', '.join(PHASES)}, got {until!r}")
        resume = self.resumed if resume is None else resume
        if progress is not None:
            self.progress = progress
        try:
            last = PHASES.index(until) if until else len(PHASES) - 1
            if not local:
                init_ray(address)
                check_experiment(self, PHASES[: last + 1])  # what the cluster cannot place, said now
            for i, phase in enumerate(PHASES[: last + 1]):
                if self.dir.done(phase):
                    self.progress.phase_skipped(phase, i + 1, len(PHASES))
                    continue
                self.progress.phase_start(phase, i + 1, len(PHASES))
                began = time.perf_counter()
                info = PHASE_RUNNERS[phase](self, local=local, resume=resume)
                wall = time.perf_counter() - began
                info.setdefault("wall_s", round(wall, 2))
                self.dir.mark_done(phase, info)
                self.dir.push()
                self.progress.phase_end(phase, i + 1, len(PHASES), info, wall)
            if last == len(PHASES) - 1:
                self.write_report()
            self.write_html_report()
            self.dir.push()
        finally:
            self.progress.close()

    def supernet_weights(self) -> dict:
        """The trained supernet's weights.

        Raises:
            ExperimentDirError: the directory has no supernet checkpoint yet.
        """
        from raynas.train import latest_checkpoint, load_checkpoint

        path = latest_checkpoint(self.dir.supernet)
        if path is None:
            raise ExperimentDirError(
                f"{self.dir.location!r} has no trained supernet yet; run: raynas search --resume {self.dir.location!r}"
            )
        return load_checkpoint(path)["model"]

    def example_input(self) -> Any:
        """One training example as a batch of one, whatever its structure (a tensor, a tuple ...)."""
        import torch

        from raynas.train.data import Batches as _Batches

        return _Batches(self.data.splits()["train"], torch.device("cpu")).take(torch.arange(1))[0]

    def path_costs(self) -> Any:
        """Parameters and FLOPs of every candidate (a path's cost is a sum)."""
        from raynas.nas import RandomMutator
        from raynas.train import profile_costs

        return profile_costs(RandomMutator(self.model_factory()), self.example_input())

    def evaluator(self, weights: Any) -> Any:
        return self.search_setup(token="local").evaluator(weights)

    def search_setup(self, token: str) -> Any:
        from raynas.search import SearchSetup

        s = self.config.search
        return SearchSetup(
            model_factory=self.model_factory,
            data_factory=self.data,
            space=self.space,
            bn_batches=s.bn_batches,
            bn_batch_size=self.config.supernet.batch_size,
            batch_size=s.batch_size,
            seed=self.config.experiment.seed,
            token=token,
            loss=s.loss,
            metrics=s.metrics,
        )

    def retrain(self, candidates: Sequence[tuple[dict, float | None]], *, name: str, local: bool, resume: bool) -> dict:
        """Retrain ``candidates`` (``(arch, search score)``, best first); writes ``results/<name>.parquet``.

        Returns:
            The summary ``state.json`` keeps (``trials``, ...).
        """
        from raynas.experiment.phases import retrain

        return retrain(self, candidates, name=name, local=local, resume=resume)

    def write_html_report(self, path: str | os.PathLike | None = None) -> Any:
        """Write ``report.html`` (or ``path``): one self-contained page of plots; returns its path."""
        from raynas.report.html import write_html_report

        return write_html_report(self, path)

    def write_report(self) -> dict | None:
        """Write ``best_architecture.json``: the best retrained architecture by the search metric
        (validation, never test), else the best search score. Returns it (``None``: none yet)."""
        table = leaderboard(self.dir, self.config.search.metric, self.config.search.mode)
        if not table:
            return None
        best = json.loads(table[0]["arch"])
        write_json_atomic(self.dir.best_architecture, best)
        return best


def create_experiment(
    config: str | os.PathLike | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    log: Log = print,
) -> Experiment:
    """A new experiment, checked before anything is written (``optuna.create_study``'s part).

    Args:
        config: ``None`` (the built-in mnist1d experiment), a YAML file, a mapping of sections
            or an :class:`ExperimentConfig`.
        overrides: settings on top, by dotted key: ``{"supernet.epochs": 5, "search.num_samples": 50}``.
        log: where progress lines go.

    Returns:
        The :class:`Experiment`; call ``.run()`` on it.

    Raises:
        RaynasError: a bad setting, a factory that does not import, or an existing directory.
    """
    experiment = Experiment.create(build_config(config, overrides), log=log)
    experiment.check_searcher()
    return experiment


def resume_experiment(
    directory: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None, log: Log = print
) -> Experiment:
    """The experiment stored in ``directory`` (its ``config.yaml``), to finish with ``.run()``.

    Args:
        directory: an experiment directory written by an earlier run.
        overrides: settings on top of the stored config, by dotted key.
        log: where progress lines go.

    Raises:
        RaynasError: not an experiment directory, a bad override, or a model whose space changed.
    """
    xdir = ExperimentDir.existing(str(directory))
    config = build_config(xdir.config, overrides)
    experiment = Experiment(config, xdir, log=log, resumed=True)
    experiment.check_searcher()
    return experiment
