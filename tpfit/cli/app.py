"""The `tpfit` command: one module per command under tpfit/cli/, registered here by name.

A new command is a module with its function (options in, a call below the CLI, a renderer) and one line in
COMMANDS. `main()` imports only the command it runs, so `tpfit plan` never loads the live stack.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Optional

import typer

from tpfit.errors import TpfitError

COMMANDS = {
    "plan": "tpfit.cli.plan:plan",
    "deploy": "tpfit.cli.deploy:deploy",
    "doctor": "tpfit.cli.doctor:doctor",
    "verify": "tpfit.cli.verify:verify",
    "explain": "tpfit.cli.explain:explain",
    "ui": "tpfit.cli.ui:ui",
    "calibrate": "tpfit.cli.calibrate:calibrate",
    "check": "tpfit.cli.check:check",
    "watch": "tpfit.cli.watch:watch",
    "speed": "tpfit.cli.speed:speed",
}
"""Command name -> "module:function", in the order `tpfit --help` lists them."""


def _version(value: bool) -> None:
    if value:
        from tpfit import __version__

        typer.echo(f"tpfit {__version__}")
        raise typer.Exit()


def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Plan multi-GPU vLLM deployments with vLLM's own arithmetic."""


def make_app(only: str | None = None) -> typer.Typer:
    """The typer app with every command, or with `only` that one (what `main()` runs)."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False,
                      help="Plan multi-GPU vLLM deployments with vLLM's own arithmetic.")
    app.callback()(_main)
    for name, target in COMMANDS.items():
        if only is None or name == only:
            module, function = target.split(":")
            command = getattr(importlib.import_module(module), function)
            app.command(name=name, short_help=summary(command.__doc__))(command)
    return app


def summary(docstring: str | None) -> str:
    """A command's first docstring paragraph as one line: what `tpfit --help` lists beside its name.

    typer's command list keeps the docstring's line breaks in its default "rich" markup mode (its own `--help`
    joins them), so a summary wrapped in the source would show broken mid-sentence."""
    return " ".join(inspect.cleandoc(docstring or "").split("\n\n")[0].split())


def __getattr__(name: str):
    if name == "app":  # `from tpfit.cli.app import app`: the whole app, built on first use
        return make_app()
    raise AttributeError(name)


_BAD_CHOICE = (r"Invalid value for '(?P<flag>[^']+)'.*?: '(?P<value>.*)' is not one of "
               r"(?P<choices>.*)\.")
"""Click's message for a value outside an enum option; compiled on the first usage error (re's own cache)."""


def usage_error_line(exc: typer.TyperException) -> str:
    """Click's usage error as tpfit's one line, naming the flag (also shown by the web page beside its field)."""
    hint = getattr(exc, "param_hint", None) or getattr(getattr(exc, "param", None), "opts", None)
    message = exc.format_message()
    choice = re.fullmatch(_BAD_CHOICE, message)
    if choice:  # an enum option: the same one line as tpfit's own usage errors
        return f"{choice['flag']} {choice['value']}: use one of {choice['choices'].replace(chr(39), '')}"
    if hint and "Invalid value" not in message:
        return f"{hint if isinstance(hint, str) else '/'.join(hint)}: {message}"
    return message


def one_line(text: str) -> str:
    """The error as one printable line: a newline, tab or control character the user typed is shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def run() -> None:
    """The `tpfit` process (the console script, `python -m tpfit`): `main()`, with two savings only a whole process
    may make (tests call `main()`, which makes neither), together about a sixth of a cold `tpfit plan`
    (bench/plan_speed.py):
    - msgspec is imported without typing_extensions (`_import_msgspec`, ~4 ms);
    - at the end every object is frozen out of the cyclic garbage collector: typer's and tpfit's modules, classes
      and functions live until exit, so the collector's passes over them at interpreter shutdown free nothing
      (~10 ms)."""
    import gc

    _import_msgspec()
    try:
        main()
    finally:
        gc.freeze()


def _import_msgspec() -> None:
    """msgspec (the base of tpfit's value types) without typing_extensions, which msgspec imports only for its
    `get_type_hints` and TypedDict markers, falling back to `typing`'s when it cannot: all that tpfit's Structs need.
    Importing typing_extensions is the largest single item of a cold `tpfit plan` besides typer (its module body,
    never used here). Only this import is affected: typing_extensions imports as usual afterwards."""
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    sys.modules["typing_extensions"] = None  # `import typing_extensions` raises ImportError while this is set
    try:
        import msgspec  # noqa: F401
    except ImportError:  # a msgspec that needs it after all: the planning library's own import brings both
        pass
    finally:
        del sys.modules["typing_extensions"]


def main() -> None:
    """The command line, run: one error line instead of a traceback (`--debug` keeps it)."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
    try:
        code = make_app(command)(standalone_mode=False)
    except TpfitError as err:
        if debug:
            raise
        typer.echo(f"error: {one_line(str(err))}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as typer vendors them
        typer.echo(f"error: {one_line(usage_error_line(exc))}", err=True)
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
