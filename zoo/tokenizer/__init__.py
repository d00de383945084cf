"""Tokenizer tools (Dagan et al. 2024, "Getting the most out of your tokenizer for pre-training
and domain adaptation"): train byte-level BPE tokenizers with the pre-tokenization regexes the
paper compares (train.py), and switch a trained model to a new tokenizer with Fast Vocabulary
Transfer (swap.py). The tokenizers themselves live in zoo.runtime.tokenizers."""

from .swap import SwapReport, fvt_sources, swap_tokenizer, token_bytes

__all__ = ["SwapReport", "fvt_sources", "swap_tokenizer", "token_bytes"]
