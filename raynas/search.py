"""Phase 3: score architectures by weight sharing, as a Ray Tune experiment or in-process.

Each trial fixes one architecture on a fresh model, copies in the trained supernet's weights,
recalibrates BatchNorm and reports ``val_accuracy``, ``val_loss``, ``params``, ``flops`` and
``wall_s``. The supernet weights travel once through the object store
(``tune.with_parameters``); actors are reused, and each keeps its evaluator (data, weights) from
one trial to the next.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from raynas._io import write_atomic, write_json_atomic
from raynas._tune import run_or_restore
from raynas.nas.space import to_decisions, to_exported
from raynas.train.evaluate import WeightSharingEvaluator
from raynas.train.placement import require, trial_request
from searchers.space import parse_search_space

__all__ = [
    "SEARCH_COLUMNS",
    "SearchSetup",
    "build_searcher",
    "arch_from_config",
    "score",
    "run_search_tune",
    "run_search_local",
]

SEARCH_COLUMNS = ("trial_id", "arch", "val_accuracy", "val_loss", "params", "flops", "wall_s", "status")


def arch_from_config(config: Mapping[str, Any], space: Mapping[str, Any]) -> dict:
    """The architecture (tuner parameter form) a trial config holds, whichever searcher made it:
    ``{"arch": parameters}`` from an NNI-protocol tuner or a :func:`searchers.tune.to_tune_space`
    sample from a Tune searcher."""
    from searchers.tune import from_tune_config

    return from_tune_config(config, space)


def score(evaluator: WeightSharingEvaluator, config: Mapping[str, Any], space: Mapping[str, Any]) -> dict:
    """Score the architecture of one trial config; the row a trial reports."""
    start = time.perf_counter()
    arch = arch_from_config(config, space)
    metrics = evaluator.evaluate(arch)
    return {
        **metrics,
        "arch": json.dumps(to_exported(arch, space), sort_keys=True),
        "wall_s": time.perf_counter() - start,
    }


class SearchSetup:
    """What every search trial needs besides the weights (small and picklable).

    Args:
        model_factory: zero-argument model factory (picklable: a module function or a partial).
        data_factory: a :class:`~raynas.train.data.DataSpec`, or a zero-argument function
            returning the data splits (called in each trial's process).
        space: the search space.
        bn_batches: BatchNorm recalibration batches.
        bn_batch_size: their size (the supernet's training batch size: the statistics BN saw).
        batch_size: evaluation batch size.
        seed: picks the recalibration batches.
        token: identifies the weights (an actor keeps its evaluator while the token is the same).
        loss: the loss (callable or ``"module:name"``; default cross-entropy).
        metrics: the metrics function (callable or ``"module:name"``; default: the accuracy).
    """

    def __init__(
        self,
        *,
        model_factory: Callable,
        data_factory: Callable,
        space: Mapping[str, Any],
        bn_batches: int,
        bn_batch_size: int,
        batch_size: int,
        seed: int,
        token: str,
        loss: Callable | str | None = None,
        metrics: Callable | str | None = None,
    ):
        self.model_factory = model_factory
        self.data_factory = data_factory
        self.space = dict(space)
        self.bn_batches = bn_batches
        self.bn_batch_size = bn_batch_size
        self.batch_size = batch_size
        self.seed = seed
        self.token = token
        self.loss = loss
        self.metrics = metrics

    def evaluator(self, weights: Any) -> WeightSharingEvaluator:
        """A new evaluator on ``weights``."""
        return WeightSharingEvaluator(
            factory=self.model_factory,
            weights=weights,
            data=self.data_factory,
            bn_batches=self.bn_batches,
            batch_size=self.bn_batch_size,
            eval_batch_size=self.batch_size,
            seed=self.seed,
            criterion=self.loss,
            metrics=self.metrics,
        )


_EVALUATORS: dict[str, WeightSharingEvaluator] = {}


def _search_trial(config: dict, *, weights: Any, setup: SearchSetup) -> None:
    from ray import tune

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    evaluator = _EVALUATORS.get(setup.token)
    if evaluator is None:
        _EVALUATORS.clear()
        evaluator = _EVALUATORS[setup.token] = setup.evaluator(weights)
    tune.report(score(evaluator, config, setup.space))


def build_searcher(
    path: str,
    *,
    space: Mapping[str, Any],
    metric: str,
    mode: str,
    kwargs: Mapping[str, Any],
    seed: int,
    constraint: Callable[[dict], str | None] | None = None,
) -> Any:
    """The search algorithm: ``path`` loaded by :func:`searchers.tune.load_searcher` (a tuner gets
    ``seed`` unless ``kwargs`` sets it), wrapped in a :class:`ConstrainedSearcher` when there is a
    constraint."""
    from searchers.constrained import ConstrainedSearcher
    from searchers.tune import load_searcher

    kwargs = dict(kwargs)
    seed = kwargs.pop("seed", seed)  # search.searcher_kwargs.seed wins over the experiment's
    searcher = load_searcher(path, search_space=space, metric=metric, mode=mode, seed=seed, **kwargs)
    if constraint is not None:
        searcher = ConstrainedSearcher(searcher, constraint=constraint)
    return searcher


def cost_constraint(
    costs: Any, space: Mapping[str, Any], *, max_params: int | None, max_flops: int | None
) -> Callable[[dict], str | None] | None:
    """A constraint on a trial config from a :class:`raynas.train.PathCosts` table, or ``None``."""
    if max_params is None and max_flops is None:
        return None
    choices = parse_search_space(space)

    def check(config: dict) -> str | None:
        params, flops = costs.cost(to_decisions(arch_from_config(config, choices), choices))
        if max_params is not None and params > max_params:
            return f"params {params} > search.max_params {max_params}"
        if max_flops is not None and flops > max_flops:
            return f"flops {flops} > search.max_flops {max_flops}"
        return None

    return check


def _row(trial_id: str, metrics: Mapping[str, Any] | None, status: str) -> dict:
    metrics = metrics or {}
    row = {"trial_id": trial_id, "status": status}
    for key in SEARCH_COLUMNS[1:-1]:
        row[key] = metrics.get(key)
    for key, value in metrics.items():  # the metrics a custom search.metrics returns
        if key.startswith("val_") and key not in row and isinstance(value, (int, float)):
            row[key] = value
    return row


def _lean_loggers() -> list:
    """Tune callbacks that replace its per-trial CSV and TensorBoard loggers with no-ops.

    A search trial reports once; writing a CSV and an event file per trial cost more driver time
    than scoring the architecture (trivial trials: ~11 -> ~16 trials/s on 2 cores). The rows go to
    ``results/search.parquet`` and ``tensorboard/search`` instead; Tune's ``result.json`` stays.
    """
    from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

    class _Silent:
        def setup(self, *args: Any, **kwargs: Any) -> None:
            pass

        def log_trial_start(self, *args: Any, **kwargs: Any) -> None:
            pass

        def log_trial_result(self, *args: Any, **kwargs: Any) -> None:
            pass

        def log_trial_end(self, *args: Any, **kwargs: Any) -> None:
            pass

    class NoCSV(_Silent, CSVLoggerCallback):
        pass

    class NoTensorBoard(_Silent, TBXLoggerCallback):
        pass

    return [NoCSV(), NoTensorBoard()]


def run_search_tune(
    *,
    searcher: Any,
    setup: SearchSetup,
    weights: Any,
    storage: str,
    name: str,
    num_samples: int,
    max_concurrent: int,
    metric: str,
    mode: str,
    resources: Mapping[str, float],
    resume: bool,
    callbacks: Sequence[Any] = (),
) -> list[dict]:
    """Run (or resume) the search as a Tune experiment; one row per trial (``callbacks``: more
    Tune callbacks, e.g. progress)."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    require(trial_request("search", resources))  # said within seconds, not waited on in silence
    weights_ref = ray.put(weights)
    trainable = tune.with_resources(
        tune.with_parameters(_search_trial, weights=weights_ref, setup=setup), dict(resources)
    )
    path = os.path.join(storage, name)
    grid = run_or_restore(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
            num_samples=num_samples,
            metric=metric,
            mode=mode,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            callbacks=_lean_loggers() + list(callbacks),
            # a trial lost with its node (or actor) is scored again on the nodes left: it only reads
            failure_config=tune.FailureConfig(max_failures=2),
        ),
        restore=path if resume else None,
    )
    if resume:
        _reload_searcher(searcher, path)
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or os.path.basename(result.path or "")
        rows.append(_row(trial_id, metrics, "error" if result.error else "ok"))
    rows.sort(key=lambda r: r["trial_id"])
    return rows


def _reload_searcher(searcher: Any, path: str) -> None:
    """Load the final state Tune saved at ``path`` into ``searcher`` (and the searchers it wraps).

    A restored Tune experiment runs its own unpickled copy of the searcher, so the caller's object
    (e.g. ``ConstrainedSearcher.rejected``) would otherwise still read as before the resume. A
    searcher without ``save`` / ``restore`` has no state to load.
    """
    from ray.tune.search import SearchGenerator

    try:
        SearchGenerator(searcher).restore_from_dir(path)
    except NotImplementedError:
        pass


def run_search_local(
    *,
    searcher: Any,
    evaluator: WeightSharingEvaluator,
    space: Mapping[str, Any],
    num_samples: int,
    progress_file: str | os.PathLike,
    log: Callable[[str], None] = lambda _msg: None,
    on_row: Callable[[dict], None] = lambda _row: None,
) -> list[dict]:
    """Run the search in this process (no Ray), resumable from ``progress_file``.

    After every trial the rows so far and the searcher's state are written atomically, so an
    interrupted run continues without losing or repeating a row. ``on_row`` sees every row (also
    those an interrupted run left); ``log`` gets failed trials.
    """
    from ray.tune.search import Searcher

    rows: list[dict] = []
    state_path = f"{progress_file}.searcher"
    if os.path.isfile(progress_file) and os.path.isfile(state_path):
        with open(progress_file) as f:
            rows = json.load(f)["rows"]
        searcher.restore(state_path)
    for row in rows:
        on_row(row)
    while len(rows) < num_samples:
        trial_id = f"local_{len(rows):05d}"
        config = searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            break  # nothing runs in parallel here: a waiting searcher has nothing more
        try:
            metrics = score(evaluator, config, space)
        except Exception as exc:  # a broken trial is a failed row, as under Tune
            searcher.on_trial_complete(trial_id, result=None, error=True)
            rows.append(_row(trial_id, {"arch": json.dumps(arch_from_config(config, space), sort_keys=True)}, "error"))
            log(f"search trial {trial_id} failed: {exc}")
        else:
            searcher.on_trial_complete(trial_id, result=metrics)
            rows.append(_row(trial_id, metrics, "ok"))
        write_atomic(state_path, lambda tmp: searcher.save(str(tmp)))
        write_json_atomic(progress_file, {"rows": rows})
        on_row(rows[-1])
    return rows
