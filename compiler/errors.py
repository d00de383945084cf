"""The compiler's one user-facing error type.

A bad spec is the most common mistake a zoo user makes, so its error must point at the file,
line and key that is wrong, say what was expected, and suggest the likely fix. It never
surfaces as a traceback from pydantic, omegaconf or torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..runtime.errors import UsageError, ZooError

__all__ = ["Location", "Problem", "SpecError", "UnknownModelError", "UsageError", "ZooError", "close_matches"]


@dataclass(frozen=True)
class Location:
    """Where a key came from: a file (or "<override>") and a 1-based line, when known."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class Problem:
    """One thing wrong with a spec."""

    path: str
    message: str
    location: Location | None = None
    expected: str | None = None
    suggestions: Sequence[str] = field(default_factory=tuple)

    def render(self) -> str:
        """One line; whatever it quotes from the input is capped, so a huge or hostile value
        cannot make the message huge."""
        where = f"{self.location}: " if self.location else ""
        key = f"{_cap(self.path, 200)}: " if self.path else ""
        text = f"{where}{key}{_cap(self.message, MAX_MESSAGE)}"
        if self.expected:
            text += f" (expected {_cap(self.expected, 300)})"
        if self.suggestions:
            text += "; did you mean " + " or ".join(repr(_cap(str(s), 100)) for s in self.suggestions) + "?"
        return text


MAX_MESSAGE = 500
MAX_PROBLEMS = 50


def _cap(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class SpecError(ZooError, ValueError):
    """A spec could not be read, resolved or validated; lists every problem found."""

    def __init__(self, problems: Problem | Iterable[Problem] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(path="", message=problems, location=Location(source) if source else None)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"invalid spec {self.source}" if self.source else "invalid spec"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0].render()}"
        lines = [f"{head}: {len(self.problems)} problems"]
        lines += [f"  - {p.render()}" for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            lines.append(f"  … and {len(self.problems) - MAX_PROBLEMS} more")
        return "\n".join(lines)


class UnknownModelError(ZooError, KeyError):
    """A model name that is neither in the catalog nor a path."""

    def __init__(self, name: str, candidates: Sequence[str]):
        self.name = name
        self.suggestions = close_matches(name, candidates)
        msg = f"unknown model {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        msg += " (`zoo list` shows the catalog)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Likely intended spellings of `word`, best first: similar spellings ignoring case, else
    candidates that contain it or that it contains (`dim` -> `head_dim`)."""
    by_lower: dict[str, str] = {}
    for c in candidates:
        if c:
            by_lower.setdefault(c.lower(), c)
    low = word.lower()
    found = difflib.get_close_matches(low, list(by_lower), n=n, cutoff=0.6)
    if not found and len(low) >= 3:  # shorter words are contained in too many names to mean anything
        found = [c for c in by_lower if low in c or (len(c) >= 3 and c in low)][:n]
    return [by_lower[c] for c in found]
