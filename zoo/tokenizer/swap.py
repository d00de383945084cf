"""Switch a trained model to a new tokenizer (Dagan et al. 2024, section on tokenizer
switching), initializing the new embedding rows with Fast Vocabulary Transfer (Gee et al. 2022).

For every tensor with a vocabulary dimension (the input embedding, the output matrix whether
tied or not, an output bias; multi-token heads share the output, so they follow), the row of
new token ``j`` is:

- *shared*: the old row of the token with the same bytes, when the old vocabulary has one
  (copied exactly);
- *special*: for the roles bos / eos / pad (and unk), the old row of the token that played
  that role (a special token is never matched by its text: ``"<s>"`` typed in code is text);
- *FVT*: the mean of the old rows of the pieces the **old** tokenizer cuts the new token's
  text into (bytes that are not whole UTF-8 text are cut by the old tokenizer's model
  directly);
- with ``init="random"`` (the baseline the paper compares against) the non-shared rows are
  drawn from N(0, std of the old matrix) instead; shared and special rows are kept either way.

Which tensors have a vocabulary dimension is asked of the compiled model, not named: two
meta-device builds whose vocab_size differs by one show the dimensions that follow it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from ..compiler.schema import ModelSpec
from ..runtime.errors import UsageError

ROLES = ("bos", "eos", "pad", "unk")
INITS = ("fvt", "random")


@functools.lru_cache(maxsize=1)
def _byte_of_symbol() -> dict[str, int]:
    """The byte-level alphabet (GPT-2's bytes_to_unicode) read backwards: symbol -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    symbols, n = {}, 0
    for b in range(256):
        if b in printable:
            symbols[chr(b)] = b
        else:
            symbols[chr(256 + n)] = b
            n += 1
    return symbols


def _symbols_of_bytes(data: bytes) -> str:
    inverse = {b: s for s, b in _byte_of_symbol().items()}
    return "".join(inverse[b] for b in data)


def _is_byte_level(tok: Any) -> bool:
    return type(tok).__name__ in ("BPETokenizer", "TekkenTokenizer") and hasattr(tok, "tokenizer")


def special_ids(tok: Any) -> set[int]:
    """Ids of control tokens: the roles, the `tokenizers` added tokens marked special, and
    SentencePiece control pieces."""
    out = {int(getattr(tok, f"{r}_id", -1)) for r in ROLES}
    inner = getattr(tok, "tokenizer", None)
    if inner is not None:
        out |= {i for i, t in inner.get_added_tokens_decoder().items() if t.special}
    if hasattr(tok, "is_control"):
        out |= {i for i in range(tok.vocab_size) if tok.is_control(i)}
    return {i for i in out if i >= 0}


def token_bytes(tok: Any, i: int) -> bytes:
    """The bytes token `i` stands for (byte-level BPE symbols, SentencePiece ▁ and <0xNN>)."""
    piece = tok.id_to_piece(i)
    if _is_byte_level(tok):
        table = _byte_of_symbol()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
    if type(tok).__name__ == "SentencePieceTokenizer":
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return bytes([int(piece[3:5], 16)])
        return piece.replace("▁", " ").encode("utf-8")
    return tok.decode([i]).encode("utf-8")


def _cut_with(old: Any, data: bytes) -> list[int]:
    """The old tokenizer's ids for `data`: encoded as text when it is UTF-8, else cut by the
    old BPE model directly (byte-level) or byte pieces (SentencePiece byte fallback)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if hasattr(old, "encode_without_dummy_prefix"):
            return list(old.encode_without_dummy_prefix(text))
        return list(old.encode(text, bos=False, eos=False))
    if _is_byte_level(old):
        return [t.id for t in old.tokenizer.model.tokenize(_symbols_of_bytes(data))]
    ids = [old.piece_to_id(f"<0x{b:02X}>") for b in data]
    if all(i >= 0 for i in ids):
        return ids
    return list(old.encode(data.decode("utf-8", errors="replace"), bos=False, eos=False))


@dataclass
class SwapReport:
    init: str
    old_vocab: int
    new_vocab: int
    shared: int = 0
    fvt: int = 0
    random: int = 0
    roles: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (old id, new id)
    tensors: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # spec sections the new tokenizer cannot keep

    def lines(self) -> list[str]:
        out = [f"vocabulary {self.old_vocab} -> {self.new_vocab}: {self.shared} shared rows kept, "
               f"{self.fvt} FVT means, {self.random} random rows",
               "special roles: " + (", ".join(f"{r} {o}->{n}" for r, (o, n) in self.roles.items()) or "none"),
               "tensors rebuilt: " + ", ".join(self.tensors)]
        if self.dropped:
            out.append("dropped from the spec: " + ", ".join(self.dropped))
        return out


def fvt_sources(old: Any, new: Any, old_roles: dict[str, int] | None = None,
                report: SwapReport | None = None) -> list[list[int]]:
    """For each new id, the old ids whose rows it takes the mean of (one id: copied exactly).
    `old_roles` (role -> old id; default: the old tokenizer's own) says which old token plays
    bos / eos / pad / unk; a new special token takes the row of the old token of its role."""
    report = report if report is not None else SwapReport("fvt", old.vocab_size, new.vocab_size)
    old_special, new_special = special_ids(old), special_ids(new)
    old_roles = {r: int(getattr(old, f"{r}_id", -1)) for r in ROLES} if old_roles is None else old_roles
    by_bytes: dict[bytes, int] = {}
    for i in range(old.vocab_size):
        if i not in old_special:
            by_bytes.setdefault(token_bytes(old, i), i)
    old_special_by_piece = {old.id_to_piece(i): i for i in old_special}
    sources: list[list[int]] = []
    for j in range(new.vocab_size):
        if j in new_special:
            src = role_source(old, new, j, old_roles, old_special_by_piece, report)
            sources.append(src)
            continue
        data = token_bytes(new, j)
        if data in by_bytes:
            sources.append([by_bytes[data]])
            report.shared += 1
        else:
            pieces = [i for i in _cut_with(old, data) if i not in old_special] if data else []
            sources.append(pieces)
            report.fvt += 1
    return sources


def role_source(old: Any, new: Any, j: int, old_roles: dict[str, int], old_special_by_piece: dict[str, int],
                report: SwapReport) -> list[int]:
    """The old row(s) for the new special token `j`: the same special piece when the old
    vocabulary has it, else the old token of the role `j` plays in the new tokenizer."""
    piece = new.id_to_piece(j)
    new_role = next((r for r in ROLES if int(getattr(new, f"{r}_id", -1)) == j), None)
    if piece in old_special_by_piece:
        src = old_special_by_piece[piece]
    elif new_role is not None and old_roles.get(new_role, -1) >= 0:
        src = old_roles[new_role]
    else:
        src = -1
    if new_role is not None and src >= 0:
        report.roles[new_role] = (src, j)
    if src >= 0:
        report.shared += 1
        return [src]
    report.fvt += 1
    return []  # a special the old model never had: the mean of all rows


def _tokenizer_kind(tok: Any) -> str:
    from ..loading import TOKENIZERS

    for kind, cls in TOKENIZERS.items():
        if isinstance(tok, cls):
            return kind
    raise UsageError(f"{type(tok).__name__} is not a tokenizer a zoo spec can name "
                     f"(kinds: {', '.join(TOKENIZERS)})")


def new_spec(spec: ModelSpec, old: Any, new: Any, report: SwapReport) -> ModelSpec:
    """`spec` with the new vocab_size and tokenizer section; role ids follow the old spec's
    (tiny-code's bos is </s>, the file separator: the new one's is the new id of that token)."""
    data = spec.model_dump(mode="json")
    data["arch"]["vocab_size"] = new.vocab_size
    tok = dict(data.get("tokenizer") or {})
    tok.update(kind=_tokenizer_kind(new), file=type(new).FILE, repo=None)
    old_to_new = {o: n for o, n in report.roles.values()}
    for r in ("bos", "eos", "pad"):
        o = tok.get(f"{r}_id")
        if o is not None:
            tok[f"{r}_id"] = old_to_new.get(o, _same_piece(old, new, o))
        if tok.get(f"{r}_id") is None and getattr(new, f"{r}_id", -1) >= 0:
            tok[f"{r}_id"] = int(getattr(new, f"{r}_id"))
    for section in ("infill", "chat"):
        if tok.get(section) is not None:
            report.dropped.append(f"tokenizer.{section}")
            tok[section] = None
    data["tokenizer"] = tok
    for section in ("weights", "published"):  # these weights are not the pinned repo's any more
        if data.get(section) is not None:
            report.dropped.append(section)
            data[section] = None
    return ModelSpec.model_validate(data)


def _same_piece(old: Any, new: Any, o: int) -> int | None:
    i = new.piece_to_id(old.id_to_piece(o)) if 0 <= o < old.vocab_size else -1
    return i if i >= 0 else None


def vocab_dims(spec: ModelSpec) -> dict[str, int]:
    """State-dict name -> the dimension that has vocab_size entries, found by building the
    model twice on the meta device with vocab_size V and V + 1."""
    from .. import api

    v = spec.arch.vocab_size
    a = api.build(spec, init="meta").state_dict()
    b = api.build(spec, [f"arch.vocab_size={v + 1}"], init="meta").state_dict()
    out = {}
    for name, t in a.items():
        diff = [d for d, (x, y) in enumerate(zip(t.shape, b[name].shape)) if x != y]
        if diff:
            out[name] = diff[0]
    return out


def _rows(old_rows: torch.Tensor, sources: list[list[int]], init: str, shared: set[int],
          gen: torch.Generator) -> torch.Tensor:
    """New rows (float32) from old rows (float32, vocab first)."""
    index = torch.tensor([s[0] if s else 0 for s in sources])
    out = old_rows[index].clone()
    fallback = old_rows.mean(0)
    std = float(old_rows.std())
    for j, src in enumerate(sources):
        if j in shared:
            continue
        if init == "random":
            out[j] = torch.randn(old_rows.shape[1:], generator=gen) * std
        else:
            out[j] = old_rows[src].mean(0) if src else fallback
    return out


def swap_tokenizer(model: Any, tokenizer: Any, init: str = "fvt", seed: int = 0) -> tuple[Any, SwapReport]:
    """A copy of `model` that reads and writes `tokenizer`'s ids: every tensor with a vocabulary
    dimension rebuilt (module docstring), everything else the same; the spec's vocab_size and
    tokenizer section updated. Returns (the model, what was done)."""
    from .. import api

    if init not in INITS:
        raise UsageError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    old = getattr(model, "tokenizer", None)
    if old is None:
        raise UsageError(f"{model.spec.name} has no tokenizer loaded: FVT cuts the new tokens with the old "
                         "tokenizer, so the model's folder must hold its tokenizer file")
    if model.spec.quantization is not None:
        raise UsageError(f"{model.spec.name} is stored quantized ({model.spec.quantization.describe()}): swap the "
                         "tokenizer of its float checkpoint, then quantize")
    spec = model.spec
    if old.vocab_size > spec.arch.vocab_size:
        raise UsageError(f"{spec.name}: its tokenizer has {old.vocab_size} tokens, more than the model's vocab_size "
                         f"{spec.arch.vocab_size}")
    report = SwapReport(init, spec.arch.vocab_size, tokenizer.vocab_size)
    spec_roles = {r: getattr(spec.tokenizer, f"{r}_id", None) for r in ("bos", "eos", "pad")} if spec.tokenizer else {}
    old_roles = {r: int(getattr(old, f"{r}_id", -1)) for r in ROLES}
    old_roles.update({r: int(v) for r, v in spec_roles.items() if v is not None})
    sources = fvt_sources(old, tokenizer, old_roles, report)
    specials = special_ids(tokenizer)
    keep = {j for j, s in enumerate(sources) if len(s) == 1 and (
        j in specials or token_bytes(tokenizer, j) == token_bytes(old, s[0]))}
    if init == "random":
        report.random, report.fvt = report.fvt, 0
    the_spec = new_spec(spec, old, tokenizer, report)
    dims = vocab_dims(spec)
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    dtype = next(iter(state.values())).dtype
    out = api.build(the_spec, init="random", dtype=dtype, tokenizer=tokenizer, seed=seed)
    new_state = {}
    done: dict[int, torch.Tensor] = {}  # tied tensors: one rebuild for every name of the same storage
    for name, t in state.items():
        if name not in dims:
            new_state[name] = t
            continue
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        if key not in done:
            d = dims[name]
            rows = _rows(t.detach().float().movedim(d, 0), sources, init, keep, gen)
            done[key] = rows.movedim(0, d).to(t.dtype).contiguous()
            report.tensors.append(name)
        new_state[name] = done[key]
    out.load_state_dict(new_state, strict=True)
    out.weights_from = None
    return out, report
