"""Text as it is generated: token ids to text pieces, and stop strings found across pieces.

    dec = IncrementalDecoder(tokenizer, context=prompt_ids)
    stops = StopMatcher(["\\n\\n"])
    for token in tokens:
        text, hit = stops.push(dec.push(token))
        print(text, end="")
        if hit:
            break
    else:
        print(stops.push(dec.flush())[0] + stops.flush(), end="")

A token is not a unit of text: a character of several UTF-8 bytes can be split over tokens, and
SentencePiece drops the space of the first piece of whatever it decodes. So the decoder decodes a
short window of ids (the last already-emitted tokens and the new ones) and emits only what that
window adds past the text it already gave, holding back a tail that is still an incomplete
character (U+FFFD). Total work is linear in the number of tokens.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from .compiler.errors import UsageError

REPLACEMENT = "\ufffd"
CONTEXT = 6  # prompt ids kept as context: enough for any merge or split character to settle


class IncrementalDecoder:
    """`push(token_id)` returns the text that token adds (often "", while a character is still
    incomplete); `flush()` whatever is held back at the end. `context`: ids already shown (the
    prompt), so the first new token's leading space is kept."""

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = [int(t) for t in list(context)[-CONTEXT:]]
        self.prefix = 0  # window start: ids[prefix:read] is text already emitted
        self.read = len(self.ids)

    def _text(self, start: int, end: int | None = None) -> str:
        return self.tokenizer.decode(self.ids[start:end]) if self.ids[start:end] else ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        shown = self._text(self.prefix, self.read)
        text = self._text(self.prefix)
        if len(text) <= len(shown) or text.endswith(REPLACEMENT):
            return ""  # nothing visible yet, or a character still waits for its next bytes
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(shown):]

    def flush(self) -> str:
        """The text held back (an incomplete character at the end shows as U+FFFD)."""
        shown = self._text(self.prefix, self.read)
        text = self._text(self.prefix)
        self.prefix = self.read = len(self.ids)
        return text[len(shown):] if len(text) > len(shown) else ""


def check_stops(stop: str | Iterable[str] | None) -> list[str]:
    """Stop strings as a list: None, one string, or a list of non-empty strings."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    try:
        stops = list(stops)
    except TypeError:
        raise UsageError(f"stop must be a string or a list of strings, got {type(stop).__name__}") from None
    for s in stops:
        if not isinstance(s, str):
            raise UsageError(f"stop must be a string or a list of strings, got an item {s!r}")
        if not s:
            raise UsageError("a stop string cannot be empty")
    return stops


class StopMatcher:
    """`push(text)` returns (text safe to emit, whether a stop string matched). A stop string may
    be split over pushes; it is never emitted, nor is anything after it. Only a tail that could
    still begin a stop string is held back; `flush()` returns it when generation ends."""

    def __init__(self, stops: Sequence[str] | str | None) -> None:
        self.stops = check_stops(stops)
        self.held = ""
        self.matched = False

    def push(self, text: str) -> tuple[str, bool]:
        if self.matched:
            return "", True
        buf = self.held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.matched, self.held = True, ""
            return buf[:min(hits)], True
        keep = 0
        for s in self.stops:  # the longest tail of buf that is a proper prefix of a stop string
            for n in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:n]):
                    keep = n
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        out, self.held = ("" if self.matched else self.held), ""
        return out


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to its first stop string (the whole of it when none occurs)."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(hits)] if hits else text


def decode_continuation(tokenizer: Any, context: Sequence[int], new_ids: Sequence[int]) -> str:
    """The text `new_ids` add after `context` (the prompt): a SentencePiece first piece keeps its
    leading space, and a character split between prompt and reply is not doubled."""
    dec = IncrementalDecoder(tokenizer, context)
    return "".join(dec.push(t) for t in new_ids) + dec.flush()


def text_pieces(tokenizer: Any, tokens: Iterable[int], *, context: Sequence[int] = (), stop_ids: Iterable[int] = (),
                stop: str | Sequence[str] | None = None) -> Iterator[str]:
    """Text pieces for a stream of token ids, ending at the first stop id (not shown) or stop
    string (not shown). Leaving the loop early closes `tokens` (ending its decoding)."""
    stop_set = {int(t) for t in stop_ids}
    dec, matcher = IncrementalDecoder(tokenizer, context), StopMatcher(stop)
    try:
        for t in tokens:
            if int(t) in stop_set:
                break
            piece, hit = matcher.push(dec.push(t))
            if piece:
                yield piece
            if hit:
                return
        piece, hit = matcher.push(dec.flush())
        piece += "" if hit else matcher.flush()
        if piece:
            yield piece
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
