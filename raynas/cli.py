"""The ``raynas`` command line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from raynas.experiment.directory import PHASES
from searchers.errors import ConfigError, ConfigTypeError, Interrupted, RaynasError

__all__ = ["main", "build_model"]

#: errors a user's input can cause: one line on stderr, exit code 2, no traceback. Every check of
#: user input raises a RaynasError; OSError is a file the user named. Anything else (a KeyError or
#: TypeError in raynas' code or in the user's model) is a bug and shows its traceback.
USER_ERRORS = (RaynasError, OSError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def user_errors(fn: Callable) -> Callable:
    """Turn user errors raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"raynas: error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # Ctrl-C; Interrupted: during a Tune phase, which Tune saved
            said = f": {_one_line(exc)}" if isinstance(exc, Interrupted) else ""
            click.echo(f"raynas: interrupted{said}; what finished is kept, --resume continues", err=True)
            sys.exit(130)

    return wrapper


def build_model(factory: str, kwargs: dict | None = None) -> Any:
    """Build a model from ``"module:factory"`` and keyword arguments, with errors that say why."""
    from torch import nn

    from raynas.train.resolve import resolve_factory

    build = resolve_factory(factory, kwargs)  # NNI's counter keys, as every raynas process builds them
    model = build()  # an error inside the factory is its own bug: it keeps its traceback
    if not isinstance(model, nn.Module):
        raise ConfigTypeError(f"factory {factory!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _parse_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--kwargs must be a JSON object, got {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--kwargs must be a JSON object, got {text!r}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raynas")
def main() -> None:
    """One-shot neural architecture search with NNI's classic API, on Ray."""


@main.command("ss-gen")
@click.argument("factory", required=False)
@click.option("--kwargs", "kwargs_json", default=None, help="JSON object of keyword arguments for FACTORY.")
@click.option(
    "-t",
    "--trial-command",
    default=None,
    help="Instead of FACTORY: dry-run this trial command with NNI_GEN_SEARCH_SPACE set, as nnictl ss_gen does "
    "(its get_and_apply_next_architecture(model) writes the space and exits).",
)
@click.option("-d", "--trial-dir", default=".", help="Directory to run --trial-command in (default: here).")
@click.option(
    "-o", "--output", "-f", "--file", "output", type=click.Path(dir_okay=False), default=None,
    help="Output file (default: stdout).",
)
@user_errors
def ss_gen(
    factory: str | None, kwargs_json: str | None, trial_command: str | None, trial_dir: str, output: str | None
) -> None:
    """Write the search space of the model built by FACTORY (``module:function``), nnictl format.

    With --trial-command, the space of the model an NNI classic-NAS trial script builds (the
    command's output goes to stderr).
    """
    from raynas._io import write_json_atomic

    if (factory is None) == (trial_command is None):
        raise ConfigError("ss-gen takes either FACTORY (module:function) or --trial-command, not both or neither")
    if trial_command is not None:
        from raynas.nas.classic_launch import generate_search_space_from_command

        if kwargs_json:
            raise ConfigError("--kwargs applies to FACTORY, not to --trial-command (pass arguments in the command)")
        space = generate_search_space_from_command(trial_command, trial_dir=trial_dir, echo=True)
    else:
        from raynas.nas.space import generate_search_space

        space = generate_search_space(build_model(factory, _parse_kwargs(kwargs_json)))
    if output is None:
        click.echo(json.dumps(space, indent=2, sort_keys=True))
    else:
        write_json_atomic(output, space)
        click.echo(f"wrote {len(space)} keys to {output}", err=True)


def _log(message: str) -> None:
    click.echo(f"[raynas] {message}", err=True)


@main.command("search")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--local", is_flag=True, help="Run every phase in this process, without Ray.")
@click.option("--address", default=None, help="Ray cluster address (default: the job's cluster, or a local Ray).")
@click.option(
    "--resume", "resume_dir", default=None, type=click.Path(file_okay=False), help="Continue the experiment in DIR."
)
@click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key (repeatable)."
)
@click.option("--until", type=click.Choice(PHASES), default=None, help="Stop after this phase.")
@click.option("-v", "--verbose", is_flag=True, help="Also show what Ray and Tune print (always kept in DIR/ray.log).")
@user_errors
def search(
    config: str | None,
    local: bool,
    address: str | None,
    resume_dir: str | None,
    overrides: tuple,
    until: str | None,
    verbose: bool,
) -> None:
    """Run an experiment: space, supernet, search, retrain, report.

    With no CONFIG it runs the built-in mnist1d experiment. The console shows each phase's
    progress; what Ray and Tune print goes to DIR/ray.log (and to the console with -v).
    """
    import time

    from raynas.experiment import Experiment, load_config
    from raynas.report.capture import capture_output
    from raynas.report.console import ConsoleProgress
    from raynas.report.summary import summary_lines

    # the path + --set strings form is the command line's; Python users call raynas.create_experiment
    if resume_dir is not None:
        if config is not None:
            raise ConfigError("give either CONFIG or --resume DIR, not both (a resumed run uses DIR/config.yaml)")
        experiment = Experiment.resume(resume_dir, overrides, log=_log)
    else:
        experiment = Experiment.create(load_config(config, overrides), log=_log)
    experiment.check_searcher()
    began = time.perf_counter()
    with capture_output(experiment.dir.ray_log, echo=verbose) as console:
        experiment.run(local=local, address=address, until=until, progress=ConsoleProgress(stream=console))
    search_cfg = experiment.config.search
    for line in summary_lines(experiment.dir, search_cfg.metric, search_cfg.mode, wall_s=time.perf_counter() - began):
        click.echo(line)


def _read_archs(path: str, space: Any) -> list[dict]:
    """Architectures from a JSON file (a list, or one object), in the exported form.

    ``space`` is the experiment's model: besides its keys, an unkeyed mutable's module path and
    NNI's counter key (``InputChoice10``, as NNI's exported files write it) name it too.
    """
    from raynas._io import read_json
    from raynas.nas.fixed import load_architecture
    from raynas.nas.space import to_exported
    from searchers.space import SearchSpaceError

    rule = "a JSON list of architectures (or one object)"
    data = read_json(path, what="architecture", expect=(list, dict), expect_text=rule)
    data = [data] if isinstance(data, dict) else data
    if not data:
        raise ConfigError(f"architecture file {path!r} must hold {rule}, got an empty list")
    archs = []
    for i, arch in enumerate(data):
        try:
            archs.append(to_exported(load_architecture(arch) if isinstance(arch, dict) else arch, space))
        except RaynasError as exc:
            raise SearchSpaceError(f"architecture #{i} in {path!r}: {_one_line(exc)}") from None
    return archs


@main.command("eval")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--archs", "archs_file", required=True, type=click.Path(dir_okay=False), help="JSON list of architectures."
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@user_errors
def eval_(directory: str, archs_file: str, fmt: str) -> None:
    """Score architectures by weight sharing on DIRECTORY's trained supernet."""
    from raynas.experiment import Experiment

    experiment = Experiment.resume(directory, log=_log)
    archs = _read_archs(archs_file, experiment.model_factory())
    evaluator = experiment.evaluator(experiment.supernet_weights())
    rows = [{"arch": arch, **evaluator.evaluate(arch)} for arch in archs]
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
    else:
        scores = sorted({k for r in rows for k in r if k.startswith("val_")})  # val_loss and every metric
        table = [{**r, "arch": json.dumps(r["arch"], sort_keys=True)} for r in rows]
        _table(table, [*scores, "params", "flops", "arch"])


@main.command("retrain")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--archs", "archs_file", required=True, type=click.Path(dir_okay=False), help="JSON list of architectures."
)
@click.option("--local", is_flag=True, help="Train in this process, without Ray.")
@click.option("--address", default=None, help="Ray cluster address.")
@click.option("--name", default=None, help="Results name (default: retrain-<archs file name>).")
@user_errors
def retrain(directory: str, archs_file: str, local: bool, address: str | None, name: str | None) -> None:
    """Retrain architectures from scratch with DIRECTORY's retrain settings (Ray and Tune's output
    goes to DIRECTORY/ray.log)."""
    from pathlib import Path

    from raynas.experiment import Experiment, init_ray
    from raynas.report.capture import capture_output
    from raynas.report.console import ConsoleProgress

    experiment = Experiment.resume(directory, log=_log)
    archs = _read_archs(archs_file, experiment.model_factory())
    name = name or f"retrain-{Path(archs_file).stem}"
    with capture_output(experiment.dir.ray_log) as console:
        experiment.progress = ConsoleProgress(stream=console)
        experiment.progress.phase_start(name, 1, 1)
        try:
            if not local:
                init_ray(address)
            info = experiment.retrain([(a, None) for a in archs], name=name, local=local, resume=True)
        finally:
            experiment.progress.close()
    experiment.dir.push()
    click.echo(json.dumps(info, sort_keys=True))
    click.echo(f"results: {experiment.dir.location}/results/{name}.parquet")


@main.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--html", "html_file", default=None, type=click.Path(dir_okay=False),
    help="Write the HTML report (plots of every phase) to this file instead.",
)
@user_errors
def report(directory: str, fmt: str, html_file: str | None) -> None:
    """Print DIRECTORY's leaderboard (retrained architectures, else search scores), or write its
    HTML report with --html (DIRECTORY/report.html is written by every run)."""
    from raynas.experiment import Experiment, ExperimentDir, load_config

    if html_file is not None:
        click.echo(f"report: {Experiment.resume(directory, log=_log).write_html_report(html_file)}")
        return
    xdir = ExperimentDir.existing(directory)
    config = load_config(xdir.config)
    _print_leaderboard(xdir, config.search.metric, config.search.mode, fmt)


def _print_leaderboard(xdir: Any, metric: str, mode: str, fmt: str, limit: int | None = None) -> None:
    from raynas.experiment import leaderboard

    rows = leaderboard(xdir, metric, mode)[:limit]
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True, default=str))
        return
    if not rows:
        click.echo("no results yet")
        return
    columns = [c for c in ("val_accuracy", "test_accuracy", "params", "flops", "arch") if c in rows[0]]
    click.echo(f"leaderboard ({rows[0]['source']}, by {metric}, {mode}):")
    _table(rows, columns)


def _table(rows: list[dict], columns: list[str]) -> None:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


@main.command("classic-nas")
@click.argument("script", type=click.Path(dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--searcher",
    default="searchers:RandomTuner",
    show_default=True,
    help="module:Class of a searchers.Tuner or a Tune Searcher.",
)
@click.option("--searcher-kwargs", default=None, help="JSON object of constructor arguments for --searcher.")
@click.option(
    "--search-space", type=click.Path(dir_okay=False), default=None, help="nnictl JSON (default: dry-run SCRIPT)."
)
@click.option("--num-samples", type=int, default=10, show_default=True, help="Trials (architectures) to run.")
@click.option("--max-concurrent", type=int, default=None, help="Trials running at once at most.")
@click.option("--metric", default="default", show_default=True, help="Result key the tuner optimizes.")
@click.option("--mode", type=click.Choice(["max", "min"]), default="max", show_default=True)
@click.option("--seed", type=int, default=None, help="The searcher's seed (default: unseeded, as NNI).")
@click.option("--trial-dir", default=None, help="Working directory of the trials (default: here).")
@click.option("--storage-path", default=None, help="Tune storage (default: ~/ray_results).")
@click.option("--name", default=None, help="Tune experiment name.")
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True)
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True)
@click.option("--max-failures", type=int, default=0, show_default=True, help="Retries of a failed trial.")
@click.option("--resume", "restore", default=None, help="Continue the Tune experiment at this path.")
@click.option("--address", default=None, help="Ray cluster address (default: the job's cluster, or a local Ray).")
@click.option("--verbose", type=click.IntRange(0, 3), default=1, show_default=True, help="Tune's verbosity.")
@user_errors
def classic_nas(
    script: str,
    script_args: tuple,
    searcher: str,
    searcher_kwargs: str | None,
    search_space: str | None,
    num_samples: int,
    max_concurrent: int | None,
    metric: str,
    mode: str,
    seed: int | None,
    trial_dir: str | None,
    storage_path: str | None,
    name: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    max_failures: int,
    restore: str | None,
    address: str | None,
    verbose: int,
) -> None:
    """Run an NNI classic-NAS trial SCRIPT as Ray Tune trials searched by a tuner.

    The script is NNI's, with its imports changed (import raynas.nas.classic_nas as nni). Arguments
    for it follow `--`: raynas classic-nas trial.py --num-samples 8 -- --epochs 2
    """
    from raynas.experiment import init_ray
    from raynas.nas.classic_launch import (
        generate_search_space_from_command,
        load_search_space,
        result_rows,
        run_classic_nas,
    )

    kwargs = _parse_kwargs(searcher_kwargs)
    if search_space is None:
        _log(f"dry run of {script} for its search space (NNI_GEN_SEARCH_SPACE)")
        space = generate_search_space_from_command(
            [sys.executable, script, *script_args], trial_dir=trial_dir or ".", echo=verbose > 0
        )
    else:
        space = load_search_space(search_space)
    init_ray(address)
    results = run_classic_nas(
        script, script_args, searcher=searcher, searcher_kwargs=kwargs, search_space=space, num_samples=num_samples,
        max_concurrent=max_concurrent, metric=metric, mode=mode, seed=seed, trial_dir=trial_dir,
        storage_path=storage_path, name=name, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
        max_failures=max_failures, verbose=verbose, restore=restore,
    )
    rows = result_rows(results, space, metric, mode)
    click.echo(f"classic NAS: {len(rows)} trials, by {metric} ({mode}):")
    _table([{**r, "arch": json.dumps(r["arch"], sort_keys=True)} for r in rows], ["sequence", metric, "status", "arch"])
    best = next((r for r in rows if r[metric] is not None), None)
    if best is not None:
        click.echo(f"best architecture: {json.dumps(best['arch'], sort_keys=True)}")
    click.echo(f"results: {results.experiment_path}")


if __name__ == "__main__":  # pragma: no cover
    main()
