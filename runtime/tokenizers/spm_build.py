"""Build a ``tokenizers.Tokenizer`` equivalent to a SentencePiece BPE model.

Why rebuild instead of calling ``sentencepiece``: the runtime depends only on ``tokenizers``
(fast, batched, thread-friendly). A SentencePiece BPE model carries no merge list, so the
merges are derived from the vocabulary and ranked so that ``tokenizers``' BPE makes the same
choices as sentencepiece's ``bpe_model.cc``:

* sentencepiece repeatedly merges the adjacent symbol pair whose concatenation is a
  NORMAL/UNUSED piece with the highest score (ties: leftmost). Every split ``a + b`` of such a
  piece, with ``a`` and ``b`` themselves mergeable pieces, becomes a merge, ranked by
  (score descending, piece id). ``tokenizers`` pops the lowest rank, then the leftmost.
* USER_DEFINED pieces are matched atomically (leftmost-longest) on the normalized text and
  never merged: they become ``normalized=True`` added tokens.
* CONTROL pieces (``<s>``, ``</s>``) are never produced from text; they decode to "".
* Characters without a piece fall back to ``<0xNN>`` byte pieces (``byte_fallback``) or unk.
* Normalization: optional precompiled charsmap, optional whitespace cleanup, the dummy "▁"
  prefix (added to every non-empty input, even one that already starts with a space, which is
  why ``pre_tokenizers.Metaspace`` is not used), then " " -> "▁".

Known, principled divergences from sentencepiece (none occur for LLaMA/Code Llama vocabularies
on ordinary text; see tests/runtime/test_tokenizers.py):

* Two *different* pairs forming the same piece, competing for a shared symbol (e.g. "ab"+"a"
  vs "a"+"ba" -> "aba"), are ordered by rank instead of position.
* UNUSED pieces are produced as-is; sentencepiece re-splits them into their parts.
* In the exported ``tokenizer.json`` only: an input that is *exactly* a user-defined piece
  (the literal string "▁<PRE>") gets no dummy prefix (see ``prefix_exempt_forms``);
  ``SentencePieceTokenizer.encode`` corrects this case.
* ``decoders`` cannot express sentencepiece's decode of malformed id sequences, hence
  ``SentencePieceTokenizer.decode`` (the exported decoder is exact on encoded text).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .errors import TokenizerError
from .spm_proto import ModelProto, ModelType, PieceType

SPACE = "\u2581"  # "▁", sentencepiece's whitespace symbol.
_MERGEABLE = (PieceType.NORMAL, PieceType.UNUSED)


def _regex_literal(s: str) -> str:
    """Escape every char as ``\\x{HHHH}`` so Oniguruma never sees a metacharacter."""
    return "".join(f"\\x{{{ord(c):X}}}" for c in s)


def _exact_alternatives(strings: Sequence[str]) -> str:
    """A regex matching exactly one of ``strings`` (longest first, for leftmost-longest)."""
    return "|".join(_regex_literal(s) for s in sorted(set(strings), key=len, reverse=True))


def byte_value(piece: str) -> int:
    """``"<0x0A>"`` -> 10 (sentencepiece's BYTE piece spelling); -1 if malformed."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return int(piece[3:5], 16)
        except ValueError:
            pass
    return -1


def derive_merges(proto: ModelProto) -> list[tuple[str, str]]:
    """BPE merges reproducing sentencepiece's score-ordered pair merging (see module doc)."""
    mergeable = {p.piece for p in proto.pieces if p.type in _MERGEABLE}
    ranked: list[tuple[float, int, int, str, str]] = []
    for pid, p in enumerate(proto.pieces):
        if p.type not in _MERGEABLE:
            continue
        s = p.piece
        for k in range(1, len(s)):
            left, right = s[:k], s[k:]
            if left in mergeable and right in mergeable:
                ranked.append((-p.score, pid, k, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _whitespace_steps(proto: ModelProto, dummy_prefix: bool) -> list[normalizers.Normalizer]:
    """Charsmap + extra-whitespace removal, i.e. everything before the dummy prefix.

    Without the dummy prefix (infilling), leading spaces are not at the start of the sentence
    in sentencepiece's view (a sentinel precedes them), so they are collapsed, not stripped.
    """
    spec = proto.normalizer_spec
    steps: list[normalizers.Normalizer] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        # sentencepiece strips trailing *escaped* spaces, so a literal "▁" there goes too.
        trailing = rf"[ {SPACE}]+\z" if spec.escape_whitespaces else r" +\z"
        edges = rf"\A +|{trailing}" if dummy_prefix else trailing
        steps += [normalizers.Replace(Regex(edges), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    return steps


def pre_prefix_normalize(proto: ModelProto, text: str) -> str:
    """``text`` after the normalizer steps that precede the dummy prefix."""
    steps = _whitespace_steps(proto, dummy_prefix=True)
    return normalizers.Sequence(steps).normalize_str(text) if steps else text


def prefix_exempt_forms(proto: ModelProto) -> frozenset[str]:
    """Strings that get no dummy prefix: the user-defined pieces as the normalizer sees them.

    ``tokenizers`` runs added-token patterns through the tokenizer's own normalizer, so the
    prefix must be suppressed when the whole string is a user piece ("▁<PRE>" must stay
    "▁<PRE>"). An *input* equal to one of these is re-encoded by ``SentencePieceTokenizer``.
    """
    if not proto.normalizer_spec.add_dummy_prefix:
        return frozenset()
    user = (p.piece for p in proto.pieces if p.type == PieceType.USER_DEFINED)
    return frozenset(pre_prefix_normalize(proto, u) for u in user)


def dummy_prefix_char(proto: ModelProto) -> str:
    """What sentencepiece prepends: the escaped space unless whitespace escaping is off."""
    return SPACE if proto.normalizer_spec.escape_whitespaces else " "


def build_normalizer(proto: ModelProto, dummy_prefix: bool = True) -> normalizers.Normalizer:
    """The sentencepiece normalizer as a ``tokenizers`` normalizer chain."""
    spec = proto.normalizer_spec
    steps = _whitespace_steps(proto, dummy_prefix)
    space = dummy_prefix_char(proto)
    if dummy_prefix and spec.add_dummy_prefix:
        exempt = prefix_exempt_forms(proto)
        if exempt:
            not_exempt = rf"\A(?!(?:{_exact_alternatives(sorted(exempt))})\z)"
            steps.append(normalizers.Replace(Regex(not_exempt), space))
        else:
            steps.append(normalizers.Prepend(space))
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def build_decoder(proto: ModelProto) -> decoders.Decoder:
    """Control pieces -> "", unk -> unk_surface, "▁" -> " ", bytes -> UTF-8, drop dummy space.

    Used by the exported ``tokenizer.json`` only. It matches sentencepiece on anything
    ``encode`` produces; on arbitrary id sequences ``SentencePieceTokenizer.decode`` is exact
    where this is not (invalid byte runs become all U+FFFD, a leading unk loses its space).
    """
    steps: list[decoders.Decoder] = []
    control = [p.piece for p in proto.pieces if p.type == PieceType.CONTROL]
    if control:
        steps.append(decoders.Replace(Regex(rf"\A(?:{_exact_alternatives(control)})\z"), ""))
    unk = [p.piece for p in proto.pieces if p.type == PieceType.UNKNOWN]
    unk_surface = proto.trainer_spec.unk_surface
    steps.append(decoders.Replace(Regex(rf"\A(?:{_exact_alternatives(unk)})\z"), unk_surface))
    steps += [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    spec = proto.normalizer_spec
    if spec.add_dummy_prefix or spec.remove_extra_whitespaces:
        steps.append(decoders.Strip(" ", 1, 0))
    return decoders.Sequence(steps)


def _check_supported(proto: ModelProto, source: str) -> None:
    ts = proto.trainer_spec
    if ts.model_type != ModelType.BPE:
        raise TokenizerError(f"{source}: model_type {ts.model_type.name} is not supported (only BPE)")
    if ts.treat_whitespace_as_suffix:
        raise TokenizerError(f"{source}: treat_whitespace_as_suffix models are not supported")
    seen: set[str] = set()
    for p in proto.pieces:
        if not p.piece:
            raise TokenizerError(f"{source}: empty piece")
        if p.piece in seen:
            raise TokenizerError(f"{source}: duplicate piece {p.piece!r}")
        seen.add(p.piece)
    if sum(p.type == PieceType.UNKNOWN for p in proto.pieces) != 1:
        raise TokenizerError(f"{source}: expected exactly one UNKNOWN piece")
    for p in proto.pieces:
        if p.type == PieceType.BYTE and byte_value(p.piece) < 0:
            raise TokenizerError(f"{source}: malformed byte piece {p.piece!r}")


def whitespace_presplit_is_exact(proto: ModelProto) -> bool:
    """Whether splitting before each run of "▁" cannot change any encoding.

    Without a pre-tokenizer every input is a single BPE "word", so ``tokenizers`` never hits
    its word cache. If no mergeable piece has "▁" after another character (true for models
    trained with ``split_by_whitespace``, e.g. LLaMA), no merge can cross such a boundary.
    """
    if not proto.normalizer_spec.escape_whitespaces:
        return False
    mergeable = [p.piece for p in proto.pieces if p.type in _MERGEABLE]
    return SPACE in mergeable and not any(SPACE in p.lstrip(SPACE) for p in mergeable)


def approximation_notes(proto: ModelProto) -> list[str]:
    """Model features this rebuild reproduces only approximately (empty for LLaMA/Code Llama)."""
    notes = []
    if any(p.type == PieceType.UNUSED for p in proto.pieces):
        notes.append("UNUSED pieces are emitted instead of being re-split into their parts")
    has_user = any(p.type == PieceType.USER_DEFINED for p in proto.pieces)
    if has_user and proto.normalizer_spec.precompiled_charsmap:
        notes.append("user-defined pieces are normalized by the charsmap (sentencepiece skips them)")
    return notes


def build_bpe_model(proto: ModelProto) -> models.BPE:
    """The BPE model: vocabulary ids = piece indices, merges from ``derive_merges``.

    ``fuse_unk`` because sentencepiece emits one unk for a run of unknown characters.
    """
    return models.BPE(
        vocab={p.piece: i for i, p in enumerate(proto.pieces)},
        merges=derive_merges(proto),
        unk_token=next(p.piece for p in proto.pieces if p.type == PieceType.UNKNOWN),
        fuse_unk=True,
        byte_fallback=proto.trainer_spec.byte_fallback,
    )


def build_tokenizer(
    proto: ModelProto,
    source: str = "<proto>",
    dummy_prefix: bool = True,
    model: models.Model | None = None,
) -> Tokenizer:
    """Build a standalone ``tokenizers.Tokenizer`` equivalent to the sentencepiece model.

    ``dummy_prefix=False`` builds the continuation (infilling) variant; ``model`` lets both
    variants share one BPE model instead of deriving the merges twice.
    """
    _check_supported(proto, source)
    ts = proto.trainer_spec
    tok = Tokenizer(model if model is not None else build_bpe_model(proto))
    tok.normalizer = build_normalizer(proto, dummy_prefix)
    if whitespace_presplit_is_exact(proto):
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(f"{SPACE}+"), behavior="merged_with_next")
    tok.decoder = build_decoder(proto)
    user = [p.piece for p in proto.pieces if p.type == PieceType.USER_DEFINED]
    if user:
        tok.add_tokens([AddedToken(u, normalized=True, special=False) for u in user])
    bos = proto.pieces[ts.bos_id].piece if 0 <= ts.bos_id < len(proto.pieces) else None
    if bos is not None:  # LLaMA convention for standalone users of the JSON: prepend BOS.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, ts.bos_id)]
        )
    return tok
