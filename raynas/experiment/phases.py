"""What each phase of an experiment does with the experiment's settings (the runner runs them in order)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from raynas._io import write_json_atomic, write_parquet_atomic, write_yaml_atomic
from raynas.experiment.results import diverse_architectures, log_tensorboard, top_architectures
from raynas.retrain import RETRAIN_COLUMNS
from raynas.search import SEARCH_COLUMNS
from raynas.train.config import LEARNABLE_ALGORITHMS

if TYPE_CHECKING:
    from raynas.experiment.runner import Experiment

__all__ = [
    "PHASE_RUNNERS",
    "phase_space",
    "phase_supernet",
    "phase_search",
    "phase_retrain",
    "retrain",
    "retrain_candidates",
]


def phase_space(x: Experiment, *, local: bool, resume: bool) -> dict:
    """Phase 1: write ``config.yaml`` and ``search_space.json``."""
    write_yaml_atomic(x.dir.config, x.config.to_dict())
    write_json_atomic(x.dir.search_space, x.space)
    return {"keys": len(x.space)}


def phase_supernet(x: Experiment, *, local: bool, resume: bool) -> dict:
    """Phase 2: train the supernet (resumes from its last checkpoint)."""
    from raynas.report.hooks import SupernetProgress
    from raynas.train import TensorBoardLogger, train_supernet

    cfg = x.config.supernet
    callbacks = [SupernetProgress(x.progress)]
    if cfg.tensorboard:
        callbacks.append(TensorBoardLogger(log_dir=x.dir.tensorboard / "supernet"))
    result = train_supernet(
        x.model_factory,
        x.data,
        cfg.replace(tensorboard=False, progress=False),  # the run's progress shows it instead
        out_dir=x.dir.supernet,
        local=local,
        resume=True,
        callbacks=callbacks,
    )
    return {
        "epochs": result.epochs,
        "steps": result.steps,
        "replicas": result.replicas,
        "restarts": result.restarts,
        "wall_s": round(result.wall_s, 2),
        "checkpoint": str(result.checkpoint),
    }


def phase_search(x: Experiment, *, local: bool, resume: bool) -> dict:
    """Phase 3: score architectures by weight sharing; writes ``results/search.parquet``."""
    from raynas.report.hooks import SearchTracker, attached, tune_callback
    from raynas.search import cost_constraint, run_search_local, run_search_tune

    s = x.config.search
    if s.num_samples == 0:
        write_parquet_atomic(x.dir.search_results, [], SEARCH_COLUMNS)
        return {"trials": 0}
    constraint = cost_constraint(x.path_costs(), x.space, max_params=s.max_params, max_flops=s.max_flops)
    searcher = x.searcher(constraint)
    weights = x.supernet_weights()
    tracker = SearchTracker(x.progress, total=s.num_samples, metric=s.metric, mode=s.mode)
    if local:
        rows = run_search_local(
            searcher=searcher,
            evaluator=x.evaluator(weights),
            space=x.space,
            num_samples=s.num_samples,
            progress_file=x.dir.results / ".search_progress.json",
            log=x.progress.message,
            on_row=lambda row: tracker.trial_done(row["trial_id"], row if row["status"] == "ok" else None),
        )
    else:
        with attached("tune_search", tracker):
            rows = run_search_tune(
                searcher=searcher,
                setup=x.search_setup(token=str(x.dir.root)),
                weights=weights,
                storage=x.dir.tune_storage,
                name="tune_search",
                num_samples=s.num_samples,
                max_concurrent=s.max_concurrent,
                metric=s.metric,
                mode=s.mode,
                resources={"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial},
                resume=resume,
                callbacks=[tune_callback("tune_search")],
            )
    write_parquet_atomic(x.dir.search_results, rows, SEARCH_COLUMNS)
    log_tensorboard(x.dir, "search", rows, s.metric)
    ok = [r for r in rows if r["status"] == "ok"]
    best = top_architectures(ok, s.metric, s.mode, 1)
    return {
        "trials": len(rows),
        "failed": len(rows) - len(ok),
        "rejected": getattr(searcher, "rejected", 0),
        f"best_{s.metric}": best[0][1] if best else None,
    }


def phase_retrain(x: Experiment, *, local: bool, resume: bool) -> dict:
    """Phase 4: retrain the best architectures from scratch; writes ``results/retrain.parquet``."""
    return retrain(x, retrain_candidates(x), name="retrain", local=local, resume=resume)


def retrain_candidates(x: Experiment) -> list[tuple[dict, float | None]]:
    """What phase 4 retrains: ``retrain.top_k`` searched architectures (``retrain.select``), or a
    learnable mutator's export."""
    import pyarrow.parquet as pq

    s, k = x.config.search, x.config.retrain.top_k
    if s.num_samples == 0 and x.config.supernet.algorithm in LEARNABLE_ALGORITHMS:
        from raynas.train import final_architecture  # a learnable mutator's own export

        return [(final_architecture(x.dir.supernet), None)]
    rows = pq.read_table(x.dir.search_results).to_pylist() if x.dir.search_results.is_file() else []
    ok = [r for r in rows if r["status"] == "ok"]
    if x.config.retrain.select == "diverse":
        return diverse_architectures(ok, s.metric, s.mode, k, x.space)
    return top_architectures(ok, s.metric, s.mode, k)


# a straight sequence (setup, local or Tune run, rows, summary): most of its length is RetrainSetup's arguments
def retrain(
    x: Experiment, candidates: Sequence[tuple[dict, float | None]], *, name: str, local: bool, resume: bool
) -> dict:
    """Retrain ``candidates`` (``(arch, search score)``, best first); writes ``results/<name>.parquet``."""
    from raynas.nas.space import to_decisions
    from raynas.report.hooks import RetrainTracker, attached, tune_callback
    from raynas.retrain import RetrainSetup, run_retrain_local, run_retrain_tune

    r, s = x.config.retrain, x.config.search
    out = x.dir.results / f"{name}.parquet"
    if not candidates:
        write_parquet_atomic(out, [], RETRAIN_COLUMNS)
        x.progress.message(f"{name}: no architecture to retrain")
        return {"trials": 0}
    costs = x.path_costs()
    flops = [costs.cost(to_decisions(arch, x.space))[1] for arch, _ in candidates]
    setup = RetrainSetup(
        model_factory=x.model_factory,
        data_factory=x.data,
        archs=[arch for arch, _ in candidates],
        search_scores=[score for _, score in candidates],
        epochs=r.epochs,
        optimizer=r.optimizer,
        lr=r.lr,
        weight_decay=r.weight_decay,
        batch_size=r.batch_size,
        seed=x.config.experiment.seed,
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
    tracker = RetrainTracker(x.progress, trials=len(candidates), epochs=r.epochs, metric=s.metric, mode=s.mode)
    if local:
        rows = run_retrain_local(
            setup=setup,
            work_dir=x.dir.root / f"{name}_local",
            flops=flops,
            log=x.progress.message,
            metric=s.metric,
            mode=s.mode,
            scheduler=r.scheduler,
            grace_period=r.grace_period,
            on_epoch=lambda rank, metrics: tracker.trial_result(str(rank), metrics),
            on_trial_end=lambda rank, row: tracker.trial_done(str(rank), row),
        )
    else:
        with attached(f"tune_{name}", tracker):
            rows = run_retrain_tune(
                setup=setup,
                storage=x.dir.tune_storage,
                name=f"tune_{name}",
                metric=s.metric,
                mode=s.mode,
                scheduler=r.scheduler,
                grace_period=r.grace_period,
                resources={"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial},
                max_failures=r.max_failures,
                flops=flops,
                resume=resume,
                callbacks=[tune_callback(f"tune_{name}")],
            )
    write_parquet_atomic(out, rows, RETRAIN_COLUMNS)
    log_tensorboard(x.dir, name, rows, s.metric)
    # the pick is by the search metric on validation data, as best_architecture.json's; test only reports it
    picked = top_architectures([r for r in rows if r["test_accuracy"] is not None], s.metric, s.mode, 1)
    best = next((r for r in rows if picked and json.loads(r["arch"]) == picked[0][0]), None)
    return {
        "trials": len(rows),
        f"best_{s.metric}": best[s.metric] if best else None,
        "its_test_accuracy": best["test_accuracy"] if best else None,
    }


#: phase name -> ``f(experiment, *, local, resume) -> info`` (what ``state.json`` records)
PHASE_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "space": phase_space,
    "supernet": phase_supernet,
    "search": phase_search,
    "retrain": phase_retrain,
}
