"""One error convention for the whole ``aki`` command.

Every command's failure ends as one line on stderr and a non-zero exit::

    aki <command>: error: <what>, <why>, <how to fix>

The message is the exception's own text: library code raises errors that already say what went
wrong and how to fix it (a config key, a path, an option). Exceptions that no code anticipated
(a ``KeyError`` deep inside, say) are still one line, marked as internal, with the hint to rerun
with ``--debug``. ``aki --debug ...`` or ``AKI_DEBUG=1`` re-raises instead, with the traceback.

Commands are wrapped once, when ``aki.cli.main`` registers them, so a new command module gets the
convention without doing anything. Typer/click usage errors (a missing argument, a bad option
value) keep click's own message and exit status 2.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click
import typer

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEBUG_ENV = "AKI_DEBUG"

_EXPECTED: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)
"""Errors whose message is written for the user (ConfigError, FileNotFoundError, LeakageError,
SkipRateError, ... all derive from these). Anything else is reported as internal."""


class CliError(Exception):
    """A command-level failure whose message is complete: what, why, and how to fix it."""


def debug_enabled() -> bool:
    """Whether to show tracebacks: ``--debug`` on the command line or ``AKI_DEBUG=1``."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The exception's message on one line (internal errors say so and name their type)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    if isinstance(err, KeyError) and text.startswith("'") and text.endswith("'"):
        text = f"missing key {text}"
    if isinstance(err, (CliError, *_EXPECTED)) and text:
        return text
    detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"internal error ({detail}); rerun with --debug for the traceback and report it"


def report(command: str, err: BaseException) -> None:
    """Print ``aki <command>: error: <message>`` to stderr."""
    message = one_line(err)
    try:
        typer.secho(f"aki {command}: error: {message}", fg=typer.colors.RED, err=True)
    except Exception:  # a broken terminal must not hide the message
        print(f"aki {command}: error: {message}", file=sys.stderr)


def guarded(command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command callback so any failure becomes the one-line report and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            report(command, CliError("interrupted"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as err:
            if debug_enabled():
                raise
            report(command, err)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def add_debug_option(app: typer.Typer) -> None:
    """Give ``app`` the global ``--debug`` flag (sets ``AKI_DEBUG=1`` for the command it runs)."""

    @app.callback()
    def _root(
        debug: bool = typer.Option(False, "--debug", help="show the full traceback when a command fails"),
    ) -> None:
        """AKI: multimodal LLMs with modality-mutual attention (MMA)."""
        if debug:
            os.environ[DEBUG_ENV] = "1"


def install(app: typer.Typer, prefix: str = "") -> None:
    """Wrap every command of ``app`` (and of its sub-apps) with :func:`guarded`."""
    for info in app.registered_commands:
        if info.callback is None or getattr(info.callback, "__wrapped__", None) is not None:
            continue
        name = info.name or info.callback.__name__.replace("_", "-")
        info.callback = guarded(f"{prefix}{name}", info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            install(group.typer_instance, f"{prefix}{group.name} " if group.name else prefix)


__all__ = ["CliError", "add_debug_option", "debug_enabled", "guarded", "install", "one_line", "report"]
