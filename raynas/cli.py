"""The ``raynas`` command line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from raynas.nas.mutator import DecisionError, MutatorBindingError
from searchers.space import SearchSpaceError

__all__ = ["main", "build_model"]

#: errors a user's input can cause: one line on stderr, exit code 2, no traceback.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, SearchSpaceError, DecisionError, MutatorBindingError)


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def user_errors(fn: Callable) -> Callable:
    """Turn user errors raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"raynas: error: {_one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper


def build_model(factory: str, kwargs: dict | None = None) -> Any:
    """Build a model from ``"module:factory"`` and keyword arguments, with errors that say why."""
    from torch import nn

    from raynas.nas.space import load_factory

    fn = load_factory(factory)
    if not callable(fn):
        raise TypeError(f"factory {factory!r} is a {type(fn).__name__}, not a callable")
    try:
        model = fn(**(kwargs or {}))
    except TypeError as exc:
        raise TypeError(f"factory {factory!r} rejected kwargs {kwargs or {}!r}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory {factory!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _parse_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--kwargs must be a JSON object, got {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--kwargs must be a JSON object, got {text!r}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raynas")
def main() -> None:
    """One-shot neural architecture search with NNI's classic API, on Ray."""


@main.command("ss-gen")
@click.argument("factory")
@click.option("--kwargs", "kwargs_json", default=None, help="JSON object of keyword arguments for FACTORY.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output file (default: stdout).")
@user_errors
def ss_gen(factory: str, kwargs_json: str | None, output: str | None) -> None:
    """Write the search space of the model built by FACTORY (``module:function``), nnictl format."""
    from raynas._io import write_json_atomic
    from raynas.nas.space import generate_search_space

    space = generate_search_space(build_model(factory, _parse_kwargs(kwargs_json)))
    if output is None:
        click.echo(json.dumps(space, indent=2, sort_keys=True))
    else:
        write_json_atomic(output, space)
        click.echo(f"wrote {len(space)} keys to {output}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
