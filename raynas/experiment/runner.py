"""Run an experiment's phases in order (space, supernet, search, retrain, then the report),
skipping those an interrupted run already finished."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from raynas._io import write_json_atomic, write_parquet_atomic, write_yaml_atomic
from raynas.experiment.config import ConfigError, ExperimentConfig, build_config, load_config
from raynas.experiment.directory import PHASES, ExperimentDir, ExperimentDirError
from raynas.retrain import RETRAIN_COLUMNS
from raynas.search import SEARCH_COLUMNS
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
        from raynas.experiment.checks import check_objective
        from raynas.train.data import DataSpec, data_factory
        from raynas.train.resolve import resolve_factory

        d = config.data
        self.model_factory = resolve_factory(config.model.factory, config.model.kwargs)
        data_factory(d.name, d.kwargs)  # imports now: a bad data.name fails before anything is written
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
        self, *, local: bool = False, address: str | None = None, until: str | None = None, resume: bool | None = None
    ) -> None:
        """Run every phase not yet done, up to ``until`` (inclusive), then write the report.

        Args:
            local: every phase in this process, without Ray (``pdb`` works).
            address: the Ray cluster to connect to (default: ``RAY_ADDRESS`` or a local Ray,
                started for you unless Ray is already initialised).
            until: the last phase to run (``space``, ``supernet``, ``search``, ``retrain``).
            resume: continue the phases' own progress (Tune experiments, checkpoints); default:
                whether this experiment was resumed.
        """
        if until is not None and until not in PHASES:
            raise ConfigError(f"until must be one of {', '.join(PHASES)}, got {until!r}")
        resume = self.resumed if resume is None else resume
        last = PHASES.index(until) if until else len(PHASES) - 1
        if not local:
            init_ray(address)
            check_experiment(self, PHASES[: last + 1])  # what the cluster cannot place, said now
        for i, phase in enumerate(PHASES[: last + 1]):
            if self.dir.done(phase):
                self.log(f"[{i + 1}/{len(PHASES)}] {phase}: done earlier, skipped")
                continue
            self.log(f"[{i + 1}/{len(PHASES)}] {phase} ...")
            info = getattr(self, f"_phase_{phase}")(local=local, resume=resume)
            self.dir.mark_done(phase, info)
            self.dir.push()
            self.log(f"[{i + 1}/{len(PHASES)}] {phase}: {json.dumps(info, sort_keys=True)}")
        if last == len(PHASES) - 1:
            self.write_report()
            self.dir.push()

    def _phase_space(self, *, local: bool, resume: bool) -> dict:
        write_yaml_atomic(self.dir.config, self.config.to_dict())
        write_json_atomic(self.dir.search_space, self.space)
        return {"keys": len(self.space)}

    def _phase_supernet(self, *, local: bool, resume: bool) -> dict:
        from raynas.train import TensorBoardLogger, train_supernet

        cfg = self.config.supernet
        result = train_supernet(
            self.model_factory,
            self.data,
            cfg.replace(tensorboard=False),
            out_dir=self.dir.supernet,
            local=local,
            resume=True,
            callbacks=[TensorBoardLogger(log_dir=self.dir.tensorboard / "supernet")] if cfg.tensorboard else [],
        )
        return {
            "epochs": result.epochs,
            "steps": result.steps,
            "replicas": result.replicas,
            "restarts": result.restarts,
            "wall_s": round(result.wall_s, 2),
            "checkpoint": str(result.checkpoint),
        }

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

    def path_costs(self) -> Any:
        """Parameters and FLOPs of every candidate (a path's cost is a sum)."""
        import torch

        from raynas.nas import RandomMutator
        from raynas.train import profile_costs
        from raynas.train.data import Batches as _Batches

        model = self.model_factory()
        # one training example as a batch of one, whatever its structure (a tensor, a tuple ...)
        example = _Batches(self.data.splits()["train"], torch.device("cpu")).take(torch.arange(1))[0]
        return profile_costs(RandomMutator(model), example)

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

    def _phase_search(self, *, local: bool, resume: bool) -> dict:
        from raynas.search import cost_constraint, run_search_local, run_search_tune

        s = self.config.search
        if s.num_samples == 0:
            write_parquet_atomic(self.dir.search_results, [], SEARCH_COLUMNS)
            return {"trials": 0}
        constraint = cost_constraint(self.path_costs(), self.space, max_params=s.max_params, max_flops=s.max_flops)
        searcher = self.searcher(constraint)
        weights = self.supernet_weights()
        if local:
            rows = run_search_local(
                searcher=searcher,
                evaluator=self.evaluator(weights),
                space=self.space,
                num_samples=s.num_samples,
                progress_file=self.dir.results / ".search_progress.json",
                log=self.log,
            )
        else:
            rows = run_search_tune(
                searcher=searcher,
                setup=self.search_setup(token=str(self.dir.root)),
                weights=weights,
                storage=self.dir.tune_storage,
                name="tune_search",
                num_samples=s.num_samples,
                max_concurrent=s.max_concurrent,
                metric=s.metric,
                mode=s.mode,
                resources={"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial},
                resume=resume,
            )
        write_parquet_atomic(self.dir.search_results, rows, SEARCH_COLUMNS)
        self._log_tensorboard("search", rows, s.metric)
        ok = [r for r in rows if r["status"] == "ok"]
        best = top_architectures(ok, s.metric, s.mode, 1)
        return {
            "trials": len(rows),
            "failed": len(rows) - len(ok),
            "rejected": getattr(searcher, "rejected", 0),
            f"best_{s.metric}": best[0][1] if best else None,
        }

    def _phase_retrain(self, *, local: bool, resume: bool) -> dict:
        return self.retrain(self._retrain_candidates(), name="retrain", local=local, resume=resume)

    def _retrain_candidates(self) -> list[tuple[dict, float | None]]:
        import pyarrow.parquet as pq

        s, k = self.config.search, self.config.retrain.top_k
        if s.num_samples == 0 and self.config.supernet.algorithm in ("darts", "enas"):
            from raynas.train import final_architecture  # a learnable mutator's own export

            return [(final_architecture(self.dir.supernet), None)]
        rows = pq.read_table(self.dir.search_results).to_pylist() if self.dir.search_results.is_file() else []
        return top_architectures([r for r in rows if r["status"] == "ok"], s.metric, s.mode, k)

    def retrain(self, candidates: Sequence[tuple[dict, float | None]], *, name: str, local: bool, resume: bool) -> dict:
        """Retrain ``candidates`` (``(arch, search score)``, best first); writes ``results/<name>.parquet``."""
        from raynas.nas.space import to_decisions
        from raynas.retrain import RetrainSetup, run_retrain_local, run_retrain_tune

        r, s = self.config.retrain, self.config.search
        out = self.dir.results / f"{name}.parquet"
        if not candidates:
            write_parquet_atomic(out, [], RETRAIN_COLUMNS)
            self.log(f"{name}: no architecture to retrain")
            return {"trials": 0}
        costs = self.path_costs()
        flops = [costs.cost(to_decisions(arch, self.space))[1] for arch, _ in candidates]
        setup = RetrainSetup(
            model_factory=self.model_factory,
            data_factory=self.data,
            archs=[arch for arch, _ in candidates],
            search_scores=[score for _, score in candidates],
            epochs=r.epochs,
            optimizer=r.optimizer,
            lr=r.lr,
            weight_decay=r.weight_decay,
            batch_size=r.batch_size,
            seed=self.config.experiment.seed,
            momentum=r.momentum,
            nesterov=r.nesterov,
            lr_schedule=r.lr_schedule,
            warmup_epochs=r.warmup_epochs,
            grad_clip=r.grad_clip,
            precision=r.precision,
            device=r.device,
            loss=r.loss,
            metrics=r.metrics,
        )
        if local:
            rows = run_retrain_local(
                setup=setup,
                work_dir=self.dir.root / f"{name}_local",
                flops=flops,
                log=self.log,
                metric=s.metric,
                mode=s.mode,
                scheduler=r.scheduler,
                grace_period=r.grace_period,
            )
        else:
            rows = run_retrain_tune(
                setup=setup,
                storage=self.dir.tune_storage,
                name=f"tune_{name}",
                metric=s.metric,
                mode=s.mode,
                scheduler=r.scheduler,
                grace_period=r.grace_period,
                resources={"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial},
                max_failures=r.max_failures,
                flops=flops,
                resume=resume,
            )
        write_parquet_atomic(out, rows, RETRAIN_COLUMNS)
        self._log_tensorboard(name, rows, s.metric)
        done = [row for row in rows if row["test_accuracy"] is not None]
        best = max(done, key=lambda row: row["test_accuracy"]) if done else None
        return {
            "trials": len(rows),
            "best_test_accuracy": best["test_accuracy"] if best else None,
        }

    def _log_tensorboard(self, phase: str, rows: Sequence[dict], metric: str) -> None:
        from tensorboardX import SummaryWriter

        with SummaryWriter(logdir=str(self.dir.tensorboard / phase)) as writer:
            for i, row in enumerate(rows):
                for key in (metric, "test_accuracy", "params", "flops"):
                    value = row.get(key)
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(f"{phase}/{key}", value, i)

    def write_report(self) -> dict | None:
        """Write ``best_architecture.json``: the best retrained architecture by the search metric
        (validation, never test), else the best search score. Returns it (``None``: none yet)."""
        table = leaderboard(self.dir, self.config.search.metric, self.config.search.mode)
        if not table:
            return None
        best = json.loads(table[0]["arch"])
        write_json_atomic(self.dir.best_architecture, best)
        return best


def top_architectures(rows: Sequence[dict], metric: str, mode: str, k: int) -> list[tuple[dict, float | None]]:
    """The ``k`` best distinct architectures of ``rows`` (``(arch, score)``, best first)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    scored.sort(key=lambda r: r[metric], reverse=(mode == "max"))
    out, seen = [], set()
    for row in scored:
        if row["arch"] in seen:
            continue
        seen.add(row["arch"])
        out.append((json.loads(row["arch"]), row[metric]))
        if len(out) == k:
            break
    return out


def leaderboard(xdir: ExperimentDir, metric: str, mode: str) -> list[dict]:
    """Rows of the leaderboard, best first: retrained architectures (by the validation metric),
    else the search's."""
    import pyarrow.parquet as pq

    for path, source in ((xdir.retrain_results, "retrain"), (xdir.search_results, "search")):
        if path.is_file():
            rows = [r for r in pq.read_table(path).to_pylist() if isinstance(r.get(metric), (int, float))]
            if rows:
                rows.sort(key=lambda r: r[metric], reverse=(mode == "max"))
                return [{**r, "source": source} for r in rows]
    return []


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
