"""The parity harness every transformers family's test uses (tests/zoo/test_family_*.py).

A family case is a transformers config class and tiny config values. The harness builds the
transformers model with random weights drawn large enough that attention is not near-uniform
(and norms and biases away from their initial values, so a dropped one could not pass), saves
it with `save_pretrained` (safetensors + config.json, as the Hub holds it), and checks:

1. folder -> zoo: `zoo.load(folder)` picks the family by model_type; logits equal within 1e-4
   (float32) on the eager and sdpa backends;
2. zoo -> transformers: `export_hf` writes a folder the transformers class loads (config.json the
   family writes) with equal logits, and the config reads back to the same spec;
3. KV-cache decoding equals the full forward, greedy tokens equal transformers' `generate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import zoo
from tests.oracles import check_decoding
from zoo.formats.export import export_hf
from zoo.formats.hf.family import difference, records

ATOL = RTOL = 1e-4
VOCAB = 128


def reference_model(config_cls: Any, model_cls: Any, seed: int = 0, weight_std: float = 0.08, **cfg: Any) -> Any:
    """A transformers model of `config_cls(**cfg)` with weights large enough to matter."""
    torch.manual_seed(seed)
    config = config_cls(**{"vocab_size": VOCAB, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **cfg})
    config._attn_implementation = "eager"
    ref = model_cls(config).float().eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name or "layernorm" in name or name.endswith("ln.weight"):
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
            else:
                p.normal_(0.0, weight_std)
    return ref


def save_reference(ref: Any, folder: Path) -> Path:
    ref.save_pretrained(folder, safe_serialization=True)
    return folder


def logits_of(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return out.logits if hasattr(out, "logits") else out


def check_family(ref: Any, tmp_path: Path, model_type: str, seq: int = 24, decode: bool = True) -> Any:
    """Every check of the module docstring; returns the zoo model (eager) for further asserts."""
    folder = save_reference(ref, tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["model_type"] == model_type
    tokens = torch.randint(3, VOCAB, (2, seq), generator=torch.Generator().manual_seed(1))
    theirs = logits_of(ref, tokens)
    assert theirs.abs().max() > 1.0, "reference logits too small to compare"
    eager = None
    for backend in ("eager", "sdpa"):
        m = zoo.load(folder, backend=backend).eval()
        assert m.spec.family == model_type
        torch.testing.assert_close(logits_of(m, tokens), theirs, atol=ATOL, rtol=RTOL)
        eager = eager or m
    assert eager is not None
    # zoo -> transformers: the config the family writes, loaded by the reference class
    out = export_hf(eager, tmp_path / "back")
    back = type(ref).from_pretrained(out, attn_implementation="eager").float().eval()
    torch.testing.assert_close(logits_of(back, tokens), theirs, atol=ATOL, rtol=RTOL)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == model_type
    again = zoo.load(out)  # the config read back: the same runtime records (derived sizes filled in)
    assert difference(records(again.spec), records(eager.spec)) is None
    if decode:
        check_decoding(eager, ref, ATOL, RTOL)
    return eager
