"""How the command line reports a failure: one `error: …` line on stderr (a `hint: …` line where
one helps), exit code 2 for anything the user can fix, never a traceback (ZOO_DEBUG=1 shows it).

The library's messages name Python arguments (`overwrite=True`, `max_new_tokens=`); the command
line rewrites them to the flags a CLI user types (`--overwrite`, `--max-new-tokens`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable, NoReturn

from ..compiler.errors import ZooError

EXIT_USER = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130

# Python argument wording -> CLI flag wording, applied to every message the CLI prints
_WORDING: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"pass overwrite=True(?:, or --overwrite,| \(--overwrite\))?", "pass --overwrite"),
    (r"\bmax_new_tokens=(\d+)", r"--max-new-tokens \1"),
    (r"\bmax_new_tokens\b", "--max-new-tokens"),
    (r"\btop_p must\b", "--top-p must"),
    (r"\btop_k must\b", "--top-k must"),
    (r"\btemperature must\b", "--temperature must"),
    (r"\bseed must\b", "--seed must"),
    (r"pass token=", "pass --token"),
    (r"\(revision=('[^']*')\)", r"(--revision \1)"),
]]


def cli_wording(message: str) -> str:
    """`message` with Python argument names replaced by the CLI flags they come from."""
    for pattern, repl in _WORDING:
        message = pattern.sub(repl, message)
    return message


class CLIError(ZooError):
    """A mistake in a command line, found by the CLI itself (with an optional hint)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ArgumentError(CLIError):
    """argparse's usage errors, raised instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ArgumentErrors (the one handler reports them);
    its subcommand parsers are Parsers too."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{self.prog}: {message}", hint=f"`{self.prog} --help` lists the arguments")


def report(error: BaseException, hint: str | None = None) -> None:
    print(f"error: {cli_wording(str(error)) if isinstance(error, ZooError) else error}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def run_guarded(run: Callable[[], int]) -> int:
    """Run a command: ZooErrors, argument errors and OSErrors (a path the user gave) print
    `error: …` and return 2, Ctrl-C returns 130, a broken pipe (`zoo list | head`) 0, and any
    other exception is a bug in zoo: one line and 1 (ZOO_DEBUG=1 re-raises it)."""
    debug = bool(os.environ.get("ZOO_DEBUG"))
    try:
        return run()
    except SystemExit as e:  # --help, --version, or a command that exits on its own
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USER)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\nerror: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except ZooError as e:
        if debug:
            raise
        report(e, getattr(e, "hint", None))
        return EXIT_USER
    except OSError as e:  # a path the user named: missing, a folder, not allowed, disk full
        if debug:
            raise
        what = e.strerror or str(e)
        where = f": {e.filename}" if e.filename else ""
        report(OSError(f"{what}{where}"), "check the path and its permissions")
        return EXIT_USER
    except Exception as e:  # noqa: BLE001 - the last line of defense: no traceback for users
        if debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e)[:500]} (a bug in zoo; ZOO_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        return EXIT_BUG
