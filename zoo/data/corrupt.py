"""Synthetic corruptions of Python source (`zoo data corrupt`), after SCIP (Yang et al. 2023,
"Decoding Data Quality via Synthetic Corruptions"): damage known to make code low quality,
applied to clean files so that where the damaged copies land in embedding space can be
measured.

Two families, as in the paper:

- syntax errors: ``remove_closing_bracket`` (a ``)``, ``]`` or ``}`` deleted),
  ``remove_colon`` (the ``:`` that opens a block deleted), ``rename_variable`` (a later use of
  an assigned name misspelt, so it refers to nothing);
- content errors, which still parse or nearly so: ``remove_lines``, ``swap_lines`` (adjacent
  lines exchanged), ``break_indentation`` (lines shifted by 1-3 spaces), ``off_by_one`` (an
  integer literal +-1), ``flip_comparison`` (``==``/``!=``, ``<``/``>=``, ...).

Each hits ``max(1, round(rate * sites))`` of its candidate sites, chosen with a seeded RNG,
so a corrupted file is a pure function of (text, kind, rate, seed). Sites come from Python's
own tokenizer (never inside strings or comments); a file it cannot read (already broken)
falls back to line-level kinds only.
"""

from __future__ import annotations

import io
import keyword
import random
import tokenize
from typing import Callable

from ..runtime.errors import UsageError

SYNTAX = ("remove_closing_bracket", "remove_colon", "rename_variable")
CONTENT = ("remove_lines", "swap_lines", "break_indentation", "off_by_one", "flip_comparison")
KINDS = SYNTAX + CONTENT
FLIP = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}


def _tokens(text: str) -> list[tokenize.TokenInfo] | None:
    try:
        return list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None


def _offsets(text: str) -> list[int]:
    """Offset of the start of each line (1-based rows of tokenize -> index row - 1)."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    out.append(pos)
    return out


def _count(rate: float, n: int) -> int:
    return min(n, max(1, round(rate * n)))


def _edit(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace text[a:b] by s for each (a, b, s), non-overlapping."""
    for a, b, s in sorted(edits, reverse=True):
        text = text[:a] + s + text[b:]
    return text


def _token_edit(text: str, rng: random.Random, rate: float,
                pick: Callable[[list[tokenize.TokenInfo], int], bool], replace: Callable[[str], str]) -> str | None:
    toks = _tokens(text)
    if toks is None:
        return None
    sites = [i for i in range(len(toks)) if pick(toks, i)]
    if not sites:
        return None
    off = _offsets(text)
    edits = []
    for i in rng.sample(sites, _count(rate, len(sites))):
        t = toks[i]
        a, b = off[t.start[0] - 1] + t.start[1], off[t.end[0] - 1] + t.end[1]
        edits.append((a, b, replace(t.string)))
    return _edit(text, edits)


def remove_closing_bracket(text: str, rng: random.Random, rate: float) -> str | None:
    return _token_edit(text, rng, rate, lambda ts, i: ts[i].type == tokenize.OP and ts[i].string in ")]}",
                       lambda s: "")


def _block_colon(ts: list[tokenize.TokenInfo], i: int) -> bool:
    if ts[i].type != tokenize.OP or ts[i].string != ":":
        return False
    j = i + 1
    while j < len(ts) and ts[j].type == tokenize.COMMENT:
        j += 1
    return j < len(ts) and ts[j].type == tokenize.NEWLINE


def remove_colon(text: str, rng: random.Random, rate: float) -> str | None:
    return _token_edit(text, rng, rate, _block_colon, lambda s: "")


def rename_variable(text: str, rng: random.Random, rate: float) -> str | None:
    toks = _tokens(text)
    if toks is None:
        return None
    assigned = {t.string for k, t in enumerate(toks[:-1]) if t.type == tokenize.NAME and toks[k + 1].string == "="
                and not keyword.iskeyword(t.string) and len(t.string) > 2}

    def pick(ts: list[tokenize.TokenInfo], i: int) -> bool:
        return (ts[i].type == tokenize.NAME and ts[i].string in assigned and (i == 0 or ts[i - 1].string != ".")
                and ts[i + 1].string != "=")

    def misspell(name: str) -> str:
        k = rng.randrange(1, len(name))
        return name[:k] + name[k + 1:] if name[:k] + name[k + 1:] not in assigned else name + "_"

    return _token_edit(text, rng, rate, pick, misspell)


def off_by_one(text: str, rng: random.Random, rate: float) -> str | None:
    def pick(ts: list[tokenize.TokenInfo], i: int) -> bool:
        return ts[i].type == tokenize.NUMBER and ts[i].string.isdigit()

    return _token_edit(text, rng, rate, pick, lambda s: str(int(s) + rng.choice((-1, 1)) if int(s) else 1))


def flip_comparison(text: str, rng: random.Random, rate: float) -> str | None:
    return _token_edit(text, rng, rate, lambda ts, i: ts[i].type == tokenize.OP and ts[i].string in FLIP,
                       lambda s: FLIP[s])


def _code_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]


def remove_lines(text: str, rng: random.Random, rate: float) -> str | None:
    lines = text.splitlines(keepends=True)
    sites = _code_lines(lines)
    if not sites:
        return None
    drop = set(rng.sample(sites, _count(rate, len(sites))))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def swap_lines(text: str, rng: random.Random, rate: float) -> str | None:
    lines = text.splitlines(keepends=True)
    sites = [i for i in _code_lines(lines) if i + 1 < len(lines) and lines[i + 1].strip() and lines[i] != lines[i + 1]]
    if not sites:
        return None
    for i in sorted(rng.sample(sites, _count(rate, len(sites)))):
        a, b = lines[i], lines[i + 1]
        if not a.endswith("\n"):
            a, b = a + "\n", b.rstrip("\n")
        lines[i], lines[i + 1] = b if b.endswith("\n") else b + "\n", a
    return "".join(lines)


def break_indentation(text: str, rng: random.Random, rate: float) -> str | None:
    lines = text.splitlines(keepends=True)
    sites = [i for i in _code_lines(lines) if lines[i][:1] == " "]
    if not sites:
        return None
    for i in rng.sample(sites, _count(rate, len(sites))):
        body = lines[i].lstrip(" ")
        indent = len(lines[i]) - len(body)
        shift = rng.choice((-3, -2, -1, 1, 2, 3))
        lines[i] = " " * max(0, indent + shift) + body
    return "".join(lines)


CORRUPTIONS: dict[str, Callable[[str, random.Random, float], str | None]] = {
    k: globals()[k] for k in KINDS}


def corrupt(text: str, kind: str, *, rate: float = 0.05, seed: int = 0) -> str | None:
    """`text` with corruption `kind` (KINDS) at `rate` of its sites, or None when the text has
    no site for it (no brackets, no indented lines, ...) or the result would be unchanged."""
    if kind not in CORRUPTIONS:
        raise UsageError(f"unknown corruption {kind!r}; known: {', '.join(KINDS)}")
    out = CORRUPTIONS[kind](text, random.Random(seed), rate)
    return None if out is None or out == text else out
