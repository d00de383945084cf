"""Code Llama fill-in-the-middle (infilling) prompts.

Layouts follow Meta's reference (``codellama/llama/generation.py``):

* PSM (prefix-suffix-middle): ``[BOS, PRE] + enc(prefix) + [SUF] + enc_infill(suffix) + [MID]``
* SPM (suffix-prefix-middle): ``[BOS, PRE, SUF] + enc_infill(suffix) + [MID] + enc(prefix)``

``enc`` is a normal encode (with sentencepiece's implicit leading "▁") without BOS/EOS;
``enc_infill`` encodes the suffix as a *continuation*, with no implicit leading space. Meta does
that with ``sp.encode("☺" + s)[2:]``, which only works where "☺" is exactly two LLaMA tokens;
``SentencePieceTokenizer.encode_without_dummy_prefix`` gives the same ids for any vocabulary.
Generation stops at ``▁<EOT>`` (or EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import UsageError
from .errors import TokenizerError
from .sentencepiece import SentencePieceTokenizer

InfillMode = Literal["psm", "spm"]

PREFIX_PIECE, SUFFIX_PIECE, MIDDLE_PIECE, EOT_PIECE = "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"


@dataclass(frozen=True)
class InfillTokens:
    """Ids of the four infilling sentinels (configurable; Code Llama's are the defaults)."""

    prefix_id: int = 32007
    suffix_id: int = 32008
    middle_id: int = 32009
    eot_id: int = 32010

    @classmethod
    def from_tokenizer(cls, tok: SentencePieceTokenizer) -> InfillTokens:
        """Look the sentinels up by piece; raise if the vocabulary has none (not Code Llama)."""
        pieces = (PREFIX_PIECE, SUFFIX_PIECE, MIDDLE_PIECE, EOT_PIECE)
        missing = [p for p in pieces if not tok.has_piece(p)]
        if missing:
            raise TokenizerError(
                f"{tok.source}: tokenizer has no infilling pieces {missing}; "
                "it is not a Code Llama tokenizer (pass InfillTokens(...) explicitly)"
            )
        return cls(*(tok.piece_to_id(p) for p in pieces))


def encode_infilling(tok: SentencePieceTokenizer, text: str) -> list[int]:
    """Encode ``text`` without the implicit leading space (Code Llama's ``encode_infilling``)."""
    return tok.encode_without_dummy_prefix(text)


def build_infill_prompt(
    tok: SentencePieceTokenizer,
    prefix: str,
    suffix: str,
    mode: InfillMode = "psm",
    ids: InfillTokens | None = None,
) -> list[int]:
    """Prompt ids asking the model to generate the code between ``prefix`` and ``suffix``.

    ``ids`` defaults to ``InfillTokens.from_tokenizer(tok)``.
    """
    mode = mode.lower()  # type: ignore[assignment]
    if mode not in ("psm", "spm"):
        raise UsageError(f"infill mode must be 'psm' or 'spm', got {mode!r}")
    t = ids if ids is not None else InfillTokens.from_tokenizer(tok)
    bos = [tok.bos_id] if tok.bos_id >= 0 else []
    enc_prefix = tok.encode(prefix, bos=False, eos=False)
    enc_suffix = encode_infilling(tok, suffix)
    if mode == "psm":
        return bos + [t.prefix_id] + enc_prefix + [t.suffix_id] + enc_suffix + [t.middle_id]
    return bos + [t.prefix_id, t.suffix_id] + enc_suffix + [t.middle_id] + enc_prefix


def stop_ids(tok: SentencePieceTokenizer, ids: InfillTokens | None = None) -> tuple[int, ...]:
    """Ids that end an infilling generation: ``▁<EOT>`` and, if the model has one, EOS."""
    t = ids if ids is not None else InfillTokens.from_tokenizer(tok)
    return (t.eot_id,) + ((tok.eos_id,) if tok.eos_id >= 0 else ())
