"""Tokenizers for the runtime: SentencePiece BPE (LLaMA / Code Llama), byte-level BPE for code,
and infilling prompts.

Built on the ``tokenizers`` library only; ``sentencepiece`` is used solely by the tests.
"""

from .bpe import BPETokenizer, train_code_tokenizer
from .errors import TokenizerError
from .infill import InfillTokens, build_infill_prompt, encode_infilling, stop_ids
from .sentencepiece import SentencePieceTokenizer
from .spm_proto import ModelProto, PieceType, load_model_proto, parse_model_proto
from .tekken import TekkenTokenizer

__all__ = [
    "BPETokenizer",
    "InfillTokens",
    "ModelProto",
    "PieceType",
    "SentencePieceTokenizer",
    "TekkenTokenizer",
    "TokenizerError",
    "build_infill_prompt",
    "encode_infilling",
    "load_model_proto",
    "parse_model_proto",
    "stop_ids",
    "train_code_tokenizer",
]
