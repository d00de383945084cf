"""A transformers encoder folder (BERT, RoBERTa, MPNet, a sentence-transformers model's weights,
...) as the embedder of `zoo data embed`: zoo's own models are decoders, while SCIP-style
embeddings often come from a bidirectional encoder. transformers is an optional dependency
here (imported on use); zoo's loader is not involved (these folders are not a decoder zoo
builds). Padding is masked with the attention mask, special tokens ([CLS] ... [SEP]) are added
as the tokenizer does, and pooling counts every real token the encoder saw, specials included
(sentence-transformers' mean pooling does the same).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..runtime.errors import UsageError


def is_encoder_folder(path: str | Path) -> bool:
    """A local folder with a transformers config.json whose model_type zoo does not read as a
    decoder (so: an encoder, or another model transformers itself must load)."""
    from ..formats.hf import model_types

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    return isinstance(model_type, str) and model_type not in model_types()


class TransformersEncoder:
    """The embedder interface of zoo.data.embed over `transformers.AutoModel`."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu", dtype: Any = None):
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise UsageError(f"{folder} is a transformers encoder folder: embedding with it needs transformers "
                             "(pip install transformers)") from None
        if isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise UsageError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
            dtype = getattr(torch, dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.net = AutoModel.from_pretrained(str(folder), dtype=dtype or torch.float32).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"{folder}: transformers could not load it as an encoder: {e}") from None
        self.name = str(folder)
        self.dim = int(self.net.config.hidden_size)
        limits = [getattr(self.net.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        self.context = min(int(v) for v in limits if isinstance(v, int) and 0 < v < 10**9) if any(
            isinstance(v, int) and 0 < v < 10**9 for v in limits) else None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.device = torch.device(device)

    def token_ids(self, text: str, max_tokens: int) -> list[int]:
        ids = self.tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
        return ids or [self.pad_id]

    def hidden(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).long()
        out = self.net(input_ids=batch.to(self.device), attention_mask=mask.to(self.device))
        return out.last_hidden_state
