"""Classic NAS, the driver's half: dry-run a trial script for its search space and run it as Ray Tune trials.

:func:`generate_search_space_from_command` is ``nnictl ss_gen`` (``raynas ss-gen --trial-command``);
:func:`run_classic_nas` (``raynas classic-nas``) runs an NNI classic-NAS trial script as Tune trials
searched by a raynas tuner (or any Tune searcher), each inside :func:`raynas.nas.trial.trial_context`;
:func:`result_rows` makes the table of a run. The trial's half, what the script imports as ``nni``,
is :mod:`raynas.nas.classic_nas`.
"""

from __future__ import annotations

import logging
import math
import os
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raynas._io import read_json
from raynas._rules import check
from raynas._tune import run_or_restore
from raynas.nas.classic_nas import NNI_GEN_SEARCH_SPACE
from raynas.nas.trial import PARAMETER_ID_KEY, trial_context
from searchers.errors import RaynasError
from searchers.space import SearchSpaceError, parse_search_space

if TYPE_CHECKING:  # pragma: no cover
    from ray.tune import ResultGrid

__all__ = [
    "ClassicNASError",
    "classic_nas_trial",
    "generate_search_space_from_command",
    "load_search_space",
    "result_rows",
    "run_classic_nas",
    "run_trial_script",
]

logger = logging.getLogger(__name__)


class ClassicNASError(RaynasError, ValueError):
    """A classic-NAS run was given something it cannot use (a script, a space, an option)."""


def load_search_space(source: str | os.PathLike | Mapping[str, Any]) -> dict:
    """A search space from a JSON file or a dict, validated, keys sorted.

    Raises:
        FileNotFoundError: no such file.
        ClassicNASError: not JSON.
        SearchSpaceError: it breaks a rule of the nnictl format.
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_json(source, what="search space", error=ClassicNASError)
    return {k: c.spec() for k, c in sorted(parse_search_space(data).items())}


def generate_search_space_from_command(
    trial_command: str | Sequence[str],
    *,
    trial_dir: str | os.PathLike = ".",
    echo: bool = False,
) -> dict:
    """Dry-run a trial command to get its search space, as ``nnictl ss_gen`` does.

    The command runs in ``trial_dir`` with ``NNI_GEN_SEARCH_SPACE`` set to a temporary file; its
    ``get_and_apply_next_architecture(model)`` writes the space there and exits.

    Args:
        trial_command: a shell command line (``"python trial.py --epochs 1"``) or an argument list.
        trial_dir: the directory to run it in (NNI's ``--trial_dir``).
        echo: copy the command's output (stdout and stderr) to this process's stderr.

    Returns:
        The search space (nnictl JSON, sorted keys).

    Raises:
        FileNotFoundError: ``trial_dir`` does not exist.
        ClassicNASError: the command failed, or exited without writing the space (the message
            quotes its last output line).
    """
    cwd = Path(trial_dir).expanduser()
    if not cwd.is_dir():
        raise FileNotFoundError(f"trial directory {str(trial_dir)!r} does not exist")
    shell = isinstance(trial_command, str)
    shown = trial_command if shell else " ".join(map(str, trial_command))
    with tempfile.TemporaryDirectory(prefix="raynas-ss-gen-") as tmp:
        path = os.path.join(tmp, "search_space.json")
        env = dict(os.environ, **{NNI_GEN_SEARCH_SPACE: path})
        try:
            proc = subprocess.run(
                trial_command if shell else [str(a) for a in trial_command],
                shell=shell,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise ClassicNASError(f"cannot run trial command {shown!r}: {exc}") from None
        if echo and proc.stdout:
            sys.stderr.write(proc.stdout)
            sys.stderr.flush()
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        last = f": {lines[-1].strip()}" if lines else ""
        if proc.returncode != 0:
            raise ClassicNASError(f"trial command {shown!r} exited with code {proc.returncode}{last}")
        if not os.path.isfile(path):
            raise ClassicNASError(
                f"trial command {shown!r} exited without writing the search space: does the script call "
                f"get_and_apply_next_architecture(model) (from raynas.nas.classic_nas)?"
            )
        return load_search_space(path)


def run_trial_script(
    script: str | os.PathLike, args: Sequence[str] = (), *, cwd: str | os.PathLike | None = None
) -> None:
    """Run a Python script in this process as ``python script args...`` would (``__name__ == "__main__"``).

    ``sys.argv``, ``sys.path[0]`` (the script's folder) and the working directory are set for the run
    and restored afterwards. ``sys.exit(0)`` (or ``sys.exit()``) ends the script normally.

    Args:
        script: the script's path.
        args: its command-line arguments.
        cwd: the working directory for the run (default: unchanged).

    Raises:
        ClassicNASError: the script exited with a non-zero code.
        FileNotFoundError: the script or ``cwd`` does not exist.
    """
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"trial script {str(script)!r} does not exist")
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(f"trial directory {str(cwd)!r} does not exist (on this node)")
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    sys.argv = [path, *map(str, args)]
    sys.path.insert(0, os.path.dirname(path))
    try:
        if cwd is not None:
            os.chdir(cwd)
        from raynas.nas.utils import mutable_counting_scope

        with mutable_counting_scope():  # the script's counter keys are those of a fresh process, actor reused or not
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise ClassicNASError(f"trial script {str(script)!r} exited with code {exc.code!r}") from None
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        os.chdir(saved_cwd)


def classic_nas_trial(
    config: dict,
    *,
    script: str,
    script_args: Sequence[str] = (),
    trial_dir: str | None = None,
    metric: str = "default",
    search_space: Mapping[str, Any] | None = None,
) -> None:
    """The Tune trainable of :func:`run_classic_nas`: the script, run inside :func:`trial_context`.

    Raises:
        ClassicNASError: the script exited with an error code, or never asked for its architecture
            (it does not call ``get_and_apply_next_architecture`` / ``nni.get_next_parameter``).
    """
    with trial_context(config, metric=metric, search_space=search_space) as context:
        run_trial_script(script, script_args, cwd=trial_dir)
    if not context.taken:
        raise ClassicNASError(
            f"trial script {script!r} never called get_and_apply_next_architecture(model) (nor "
            "nni.get_next_parameter()): the architecture proposed for this trial was not applied"
        )
    if not context.finals and not context.intermediate:
        logger.warning("trial script %r reported no result (call nni.report_final_result(value))", script)


def _trainable(
    script: Path, script_args: Sequence[str], trial_dir: Path, metric: str, space: dict, cpus: float, gpus: float
) -> Any:
    from ray import tune

    trainable = tune.with_parameters(
        classic_nas_trial,
        script=str(script),
        script_args=list(script_args),
        trial_dir=str(trial_dir),
        metric=metric,
        search_space=space,
    )
    return tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})


def _search_alg(
    searcher: Any, kwargs: dict, space: dict, metric: str, mode: str, seed: int | None, restore: Any
) -> Any:
    """The Tune search algorithm :func:`run_classic_nas` runs (``None`` on a restore: Tune restores it)."""
    from ray import tune
    from ray.tune.search import Searcher

    from searchers.base import Tuner
    from searchers.tune import TunerSearcher, load_searcher

    if restore is not None:
        if not tune.Tuner.can_restore(str(restore)):
            raise ClassicNASError(f"no Tune experiment to restore at {str(restore)!r}")
        return None
    if isinstance(searcher, str):
        return load_searcher(searcher, search_space=space, metric=metric, mode=mode, seed=seed, **kwargs)
    if kwargs:
        raise ClassicNASError("searcher_kwargs apply to a searcher given by import path, not to an instance")
    if isinstance(searcher, Tuner):
        return TunerSearcher(searcher, search_space=space, metric=metric, mode=mode)
    if isinstance(searcher, Searcher):
        return searcher
    raise ClassicNASError(
        f"searcher must be an import path 'module:Class', a searchers.Tuner or a Tune Searcher, got {searcher!r}"
    )


# Longer than 60 lines: its docstring documents 20 options; the body is about 45.
def run_classic_nas(
    script: str | os.PathLike,
    script_args: Sequence[str] = (),
    *,
    searcher: Any = "searchers:RandomTuner",
    searcher_kwargs: Mapping[str, Any] | None = None,
    search_space: str | os.PathLike | Mapping[str, Any] | None = None,
    num_samples: int = 10,
    max_concurrent: int | None = None,
    metric: str = "default",
    mode: str = "max",
    seed: int | None = None,
    trial_dir: str | os.PathLike | None = None,
    storage_path: str | None = None,
    name: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_failures: int = 0,
    scheduler: Any = None,
    reuse_actors: bool = False,
    verbose: int = 0,
    restore: str | os.PathLike | None = None,
) -> ResultGrid:
    """Run an NNI classic-NAS trial script as Ray Tune trials searched by a tuner.

    Each trial runs ``python script script_args...`` in a Tune worker (in its own process unless
    ``reuse_actors``, as NNI starts a process per trial), with ``trial_dir`` as working directory. Its
    ``get_and_apply_next_architecture(model)`` applies the architecture the searcher proposed for the
    trial, its ``nni.report_*_result`` calls become Tune results, and its last result's ``metric``
    reaches the tuner.

    Args:
        script: the trial script (a Python file).
        script_args: its command-line arguments.
        searcher: an import path ``"module:Class"`` of a :class:`searchers.Tuner` (wrapped in
            :class:`searchers.tune.TunerSearcher`) or of a Tune ``Searcher`` (given the space through
            :func:`searchers.tune.to_tune_space`); or an instance of either (a Tune ``Searcher``
            instance must already hold its space).
        searcher_kwargs: constructor arguments for an import path.
        search_space: a JSON file or dict; ``None``: dry-run the script (``nnictl ss_gen``).
        num_samples: how many trials (architectures) at most.
        max_concurrent: trials running at once at most (``None``: as resources allow).
        metric: the result key the tuner optimizes (a number reported by the script goes under it).
        mode: ``"max"`` or ``"min"``.
        seed: the searcher's seed (passed to a class whose constructor takes ``seed``).
        trial_dir: the trials' working directory (NNI's trial ``codeDir``; default: the current one).
        storage_path: Tune's storage (default: Tune's, ``~/ray_results``).
        name: the Tune experiment name (default: Tune's).
        cpus_per_trial: CPUs per trial.
        gpus_per_trial: GPUs per trial (fractions share a GPU).
        max_failures: retries of a failed trial.
        scheduler: a Tune trial scheduler (e.g. ASHA over the intermediate results).
        reuse_actors: run trials in reused Tune actors (faster; only for scripts without process-wide state).
        verbose: Tune's verbosity (0-3).
        restore: a previous run's experiment path to continue (``tune.Tuner.restore``); give the same script,
            arguments and options.

    Returns:
        Tune's ``ResultGrid``; :func:`result_rows` turns it into a table.

    Raises:
        ClassicNASError: a bad option, a failed dry run.
        SearchSpaceError: a bad search space.
        FileNotFoundError: the script, trial_dir or space file does not exist.
    """
    from ray import tune

    from searchers.tune import TunerSearcher

    script = Path(script).expanduser().resolve()
    if not script.is_file():
        raise FileNotFoundError(f"trial script {str(script)!r} does not exist")
    trial_dir = Path(trial_dir if trial_dir is not None else os.getcwd()).expanduser().resolve()
    if not trial_dir.is_dir():
        raise FileNotFoundError(f"trial directory {str(trial_dir)!r} does not exist")
    for key, value, kind, options in (
        ("mode", mode, "choice", {"valid": ("max", "min")}),
        ("metric", metric, "str", {}),
        ("num_samples", num_samples, "int", {"min": 1}),
        ("max_failures", max_failures, "int", {"min": 0}),
        ("max_concurrent", max_concurrent, "int", {"min": 1, "optional": True}),
        ("cpus_per_trial", cpus_per_trial, "number", {"min": 0}),
        ("gpus_per_trial", gpus_per_trial, "number", {"min": 0}),
    ):
        check(key, value, kind, error=ClassicNASError, **options)
    if search_space is None:
        space = generate_search_space_from_command([sys.executable, str(script), *script_args], trial_dir=trial_dir)
    else:
        space = load_search_space(search_space)
    search_alg = _search_alg(searcher, dict(searcher_kwargs or {}), space, metric, mode, seed, restore)
    trainable = _trainable(script, script_args, trial_dir, metric, space, float(cpus_per_trial), float(gpus_per_trial))
    if isinstance(search_alg, TunerSearcher):
        search_alg.parameter_id_key = PARAMETER_ID_KEY  # NNI's sequence id, for nni.get_sequence_id()
    return run_or_restore(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
        restore=None if restore is None else str(restore),  # checked restorable above
    )


def result_rows(
    results: Any, search_space: Mapping[str, Any], metric: str = "default", mode: str = "max"
) -> list[dict]:
    """One row per trial, best first: ``sequence``, the metric, ``status``, ``trial_id`` and ``arch``.

    ``arch`` is the trial's architecture in the readable exported form (``None`` where the config
    does not hold one); trials without a numeric metric (errors) come last.

    Args:
        results: a ``ResultGrid`` (or any iterable of Tune ``Result``).
        search_space: the space the run searched.
        metric: the metric to rank by.
        mode: ``"max"`` or ``"min"``.

    Returns:
        The rows.
    """
    from searchers.space import to_exported
    from searchers.tune import from_tune_config

    rows = []
    for result in results:
        config = result.config or {}
        metrics = result.metrics or {}
        try:
            arch = to_exported(from_tune_config(config, search_space), search_space)
        except (SearchSpaceError, TypeError, KeyError):
            arch = None
        value = metrics.get(metric)
        usable = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        rows.append(
            {
                "sequence": config.get(PARAMETER_ID_KEY),
                metric: float(value) if usable else None,
                "status": "ERROR" if result.error is not None else "DONE",
                "trial_id": metrics.get("trial_id"),
                "arch": arch,
            }
        )
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r[metric] is None, sign * r[metric] if r[metric] is not None else 0.0, r["sequence"] or 0))
    return rows
