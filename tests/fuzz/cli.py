"""Running the `zoo` CLI in-process and judging it by the CLI's contract: a refusal is exit code 2
with `error: ...` on stderr and never a traceback."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

from .isolation import Outcome, isolated


@dataclass
class CliResult:
    code: int | None
    stdout: str
    stderr: str


def run_cli(argv: list[str]) -> CliResult:
    """`zoo ARGV` in this process (zoo.cli.main), its output captured. An exception escaping
    main propagates (a traceback)."""
    from zoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors exit 2
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return CliResult(code, _ends(out.getvalue()), _ends(err.getvalue()))


def _ends(text: str, n: int = 3000) -> str:
    return text if len(text) <= 2 * n else text[:n] + "\n[…]\n" + text[-n:]


def cli_outcome(out: Outcome) -> Outcome:
    """A CLI run's Outcome by the CLI's contract: exit 2 with `error:` on stderr and no traceback
    is the typed refusal (zoo); exit 0 is accepted (ok); anything else is a traceback (other)."""
    if out.kind != "ok":
        return out
    res: CliResult = out.value
    if "Traceback (most recent call last)" in res.stderr:
        return Outcome("other", "traceback on stderr", res.stderr[-1500:], value=res, warnings=out.warnings)
    if res.code == 2 and "error:" in res.stderr:
        line = next((ln for ln in res.stderr.splitlines() if "error:" in ln), res.stderr)
        return Outcome("zoo", "cli exit 2", line, value=res, warnings=out.warnings)
    if res.code == 0:
        return Outcome("ok", value=res.stdout[-300:], warnings=out.warnings)
    return Outcome("other", f"cli exit {res.code}", (res.stderr or res.stdout)[-1500:], value=res,
                   warnings=out.warnings)


def isolated_cli(argv: list[str], **kw: Any) -> Outcome:
    return cli_outcome(isolated(run_cli, list(argv), **kw))
