"""The `slim` command line (typer). The only module that prints results or exits.

Exit codes: 0 ok · 1 a gate or verification failed · 2 usage error · 3 any other SlimError.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer

from slim import __version__
from slim.errors import SlimError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make container images small without breaking them; every kept file knows why.",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def fail(exc: SlimError) -> NoReturn:
    """Print one line naming the object, exit 2 for usage errors, 3 otherwise."""
    if _state["debug"]:
        raise exc
    typer.echo(f"slim: error: {exc}", err=True)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 3)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Show decisions (-vv: debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"slim {__version__}")
        raise typer.Exit(0)
    _state["debug"] = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
