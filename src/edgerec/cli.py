"""The ``edgerec`` command line.

Each area registers its own commands from ``edgerec.commands.<area>``; heavy imports
(torch, pandas, onnx) happen inside the commands, so ``edgerec --help``, ``recommend``
and ``info`` work in a runtime-only install. Errors edgerec raises on purpose print one
line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from edgerec import __version__
from edgerec.commands.helpfmt import tidy_help

app = typer.Typer(
    name="edgerec",
    help="Long/short-term interest recommender: train, export to ONNX, serve, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}
AREAS = ("data", "evaluate", "train", "export", "runtime", "bench", "demo", "serve", "web", "ort")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgerec {__version__}")
        raise typer.Exit()


class _EchoHandler(logging.Handler):
    """edgerec's own log warnings (e.g. stale temporary folders removed) as one
    ``warning: ...`` line on stderr, like the data loaders' warnings."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _log_to_stderr() -> None:
    logger = logging.getLogger("edgerec")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        handler = _EchoHandler(logging.WARNING)
        logger.addHandler(handler)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show full tracebacks on errors (before or after the command: "
        "edgerec --debug train ... or edgerec train ... --debug).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug
    _log_to_stderr()


tidy_help()
for _area in AREAS:
    try:
        _module = importlib.import_module(f"edgerec.commands.{_area}")
    except ModuleNotFoundError as _e:
        if _e.name != f"edgerec.commands.{_area}":
            raise
        continue
    _module.register(app)


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` anywhere before a ``--`` counts: it moves to the front, where the
    parser takes it (a subcommand would refuse it as an unknown option)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]


def main(argv: list[str] | None = None) -> None:
    from edgerec.errors import EdgerecError

    args = _debug_first(list(argv if argv is not None else sys.argv[1:]))
    debug = bool(args) and args[0] == "--debug"
    try:
        app(args=args, standalone_mode=False, prog_name="edgerec")
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            code = getattr(e, "code", 0)
        sys.exit(code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # the CLI's one place that turns errors into messages
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # click/typer usage errors
            e.show()
            sys.exit(e.exit_code)
        if debug:
            raise
        kind = "error" if isinstance(e, EdgerecError | ValueError | OSError) else "internal error"
        typer.echo(f"{kind}: {e}", err=True)
        if kind == "internal error":
            typer.echo("(run with --debug for the traceback)", err=True)
        sys.exit(2 if kind == "error" else 1)
