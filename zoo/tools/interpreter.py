"""The Python interpreter tool: the model writes a program, zoo.sandbox runs it (its own
process group, temporary folder, rlimits, wall clock, output cap; docs/sandbox.md says what
it does not protect against) and what it printed goes back to the model.

    m.chat(messages, tools=[zoo.tools.python])
    zoo.tools.python_tool(timeout=30, memory_bytes=2**31)   # other limits
"""

from __future__ import annotations

from typing import Any

from .schema import Tool, function_schema

#: at most this many characters of a run's output go back to the model
MAX_CHARS = 4000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def python_tool(name: str = "python", max_chars: int = MAX_CHARS, **limits: Any) -> Tool:
    """A Python interpreter Tool whose runs go through zoo.sandbox under `limits`
    (zoo.sandbox.Limits fields: timeout, cpu_seconds, memory_bytes, ...)."""
    def python(code: str) -> str:
        """Run a Python program and return what it prints (stdout; stderr too when it fails).

        Args:
            code: the Python program to run; print the values you want to see
        """
        from .. import sandbox

        r = sandbox.run(code, **limits)
        out = r.stdout
        if r.status != "passed":
            out += r.stderr + f"\n[{r.status}" + (f", exit status {r.returncode}" if r.returncode else "") + "]"
        return _clip(out, max_chars)

    return Tool(python, function_schema(python, name=name))


#: the default interpreter tool (zoo.sandbox's default limits: 10 s, 1 GiB)
python = python_tool()
