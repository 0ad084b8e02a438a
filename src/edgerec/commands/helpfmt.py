"""How ``--help`` shows parameters, in one place for every command.

Typer 0.2x prints a type hint after every option, flags included (``--json <bool>``,
``--help <bool>``), and writes required positional arguments as ``{run_dir}``. edgerec's
help follows the usual convention instead: flags have no value hint, and positional
arguments are upper case (``edgerec export [OPTIONS] RUN_DIR``; optional ones in
brackets). :func:`tidy_help` adjusts typer's parameter classes once, at CLI start-up; on a
typer without these hooks it changes nothing (the help is then typer's own).

:func:`show_defaults` adds the default each unset option stands for to its help (options
whose ``None`` means "keep the configured default", as in ``edgerec train``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_MARK = "_edgerec_tidy"


def tidy_help() -> None:
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover - another typer layout
        return
    display_type = getattr(TyperOption, "display_type_rich", None)
    if display_type is not None and not getattr(display_type, _MARK, False):

        def display_type_rich(self, ctx):
            if getattr(self, "is_flag", False) and self.metavar is None:
                return None  # a flag takes no value: no "<bool>"
            return display_type(self, ctx)

        setattr(display_type_rich, _MARK, True)
        TyperOption.display_type_rich = display_type_rich

    if hasattr(TyperArgument, "_usage_display_name") and not getattr(
        TyperArgument._usage_display_name, _MARK, False
    ):

        def display_name_raw(self) -> str:
            return self.metavar if self.metavar is not None else str(self.name).upper()

        def usage_display_name(self) -> str:
            name = self.display_name_raw
            if not self.required:
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        setattr(usage_display_name, _MARK, True)
        TyperArgument.display_name_raw = property(display_name_raw)
        TyperArgument._usage_display_name = usage_display_name


def show_defaults(command: Callable, lookup: Callable[[str], Any]) -> Callable:
    """Append ``[default: VALUE]`` to the help of ``command``'s options that default to
    None, VALUE being ``lookup(parameter name)`` (skipped where it returns None)."""
    import typer
    from rich.markup import escape

    for name, param in inspect.signature(command).parameters.items():
        info = param.default
        if not isinstance(info, typer.models.OptionInfo) or info.default is not None:
            continue
        if getattr(info, _MARK, False):
            continue
        value = lookup(name)
        if value is None:
            continue
        if isinstance(value, bool):
            flags = [d for d in info.param_decls or () if "/" in d]
            if flags:  # "--request-time/--no-request-time": name the flag, as typer does
                on, off = flags[0].split("/", 1)
                value = (on if value else off).strip().lstrip("-")
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value) or "none"
        info.help = f"{info.help or ''} [dim]{escape(f'[default: {value}]')}[/dim]".strip()
        setattr(info, _MARK, True)
    return command
