"""Entry point of the ``aki`` command.

Subcommands live in sibling modules (``aki/cli/<name>.py``), each exposing ``register(app)``;
they are discovered here so a new command is one new file. Every command is wrapped by
:mod:`aki.cli.errors`: a failure is one line ``aki <command>: error: ...`` and a non-zero exit;
``aki --debug ...`` (or ``AKI_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import aki.cli as _cli_pkg
from aki.cli.errors import add_debug_option, install

app = typer.Typer(
    name="aki",
    help="AKI: multimodal LLMs with modality-mutual attention (MMA).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(_cli_pkg.__path__), key=lambda m: m.name):
        if info.name in {"main"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"aki.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


add_debug_option(app)
_register_all()
install(app)


def main() -> None:  # pragma: no cover - thin wrapper
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
