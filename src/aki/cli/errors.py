"""One error convention for the whole ``aki`` command.

Every command's failure ends as one line on stderr and a non-zero exit::

    aki <command>: error: <what>, <why>, <how to fix>

The message is the exception's own text: library code raises errors that already say what went
wrong and how to fix it (a config key, a path, an option). Exceptions that no code anticipated
(a ``KeyError`` deep inside, say) are still one line, marked as internal, with the hint to rerun
with ``--debug``. ``aki --debug ...`` or ``AKI_DEBUG=1`` re-raises instead, with the traceback.

Commands are wrapped once, when ``aki.cli.main`` registers them, so a new command module gets the
convention without doing anything. Typer/click usage errors found while parsing (a missing
argument, a bad option value) keep click's own message and exit status 2; a ``typer.BadParameter``
raised by a command's body is one line too, with exit status 2. An exception class may set an
integer ``exit_code`` (``ConfigError``: 2, a config that cannot run) to choose its status.
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

_TYPER_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE: tuple[type[BaseException], ...] = tuple({click.ClickException, _TYPER_CLICK_ERROR})
"""Click's errors, and typer's (typer vendors its own click): their message is for the user, and
their ``exit_code`` (2 for usage errors) is kept."""
_CLICK_CONTROL: tuple[type[BaseException], ...] = tuple(
    {typer.Exit, typer.Abort, click.exceptions.Exit, click.Abort})
_EXPECTED: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, *_USAGE)
"""Errors whose message is written for the user (ConfigError, FileNotFoundError, LeakageError,
SkipRateError, ... all derive from these). Anything else is reported as internal."""


class CliError(Exception):
    """A command-level failure whose message is complete: what, why, and how to fix it."""


def debug_enabled() -> bool:
    """Whether to show tracebacks: ``--debug`` on the command line or ``AKI_DEBUG=1``."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The exception's message on one line (internal errors say so and name their type)."""
    raw = str(err)
    if isinstance(err, _USAGE):  # "Invalid value for '--x': ..." when a parameter is named, else the message
        named = getattr(err, "param", None) is not None or getattr(err, "param_hint", None) is not None
        raw = err.format_message() if named else err.message
    text = " ".join(part.strip() for part in raw.splitlines() if part.strip())
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


def exit_status(err: BaseException) -> int:
    """The exit status for ``err``: its class's integer ``exit_code`` if it has one, else 1."""
    code = getattr(err, "exit_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) and code > 0 else EXIT_ERROR


def guarded(command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command callback so any failure becomes the one-line report and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CLICK_CONTROL:
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            report(command, CliError("interrupted"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as err:  # Exception, and library errors deriving from BaseException only
            if debug_enabled():  # (torch's DCP CheckpointException)
                raise
            report(command, err)
            raise typer.Exit(exit_status(err)) from None

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


__all__ = ["CliError", "add_debug_option", "debug_enabled", "exit_status", "guarded", "install", "one_line",
           "report"]
