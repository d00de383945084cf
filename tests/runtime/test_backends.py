"""The backend registry, refusals with reasons, kernel selection, packed sequences, and the
parity matrix: every backend available here against eager, every catalog family."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import zoo
from zoo.runtime import backends
from zoo.runtime.backends import BackendUnavailable
from zoo.runtime.backends.xla import attention_kernel_for
from zoo.runtime.mask import AttentionLayout

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=96", "arch.ffn.hidden_dim=96", "arch.max_seq_len=128",
        "arch.attention.n_heads=4"]
HAVE_CUDA = torch.cuda.is_available()


def available_backends() -> list[str]:
    dev = torch.device("cuda" if HAVE_CUDA else "cpu")
    return [n for n in backends.names() if n not in ("auto", "eager") and
            backends.get(n, dev, check=False).availability(dev).ok]


def test_xformers_refuses_on_cpu_with_the_reason() -> None:
    with pytest.raises(BackendUnavailable, match="xformers: needs a CUDA device, have cpu"):
        zoo.build("llama-2-7b", TINY, backend="xformers")
    plan = zoo.compile("llama-2-7b", backend="xformers").explain()
    assert "[REFUSED]" in plan and "needs a CUDA device, have cpu" in plan


def test_xla_refuses_without_torch_xla_or_xla_device() -> None:
    with pytest.raises(BackendUnavailable, match="xla: (torch_xla not installed|needs an XLA device)"):
        zoo.build("llama-2-7b", TINY, backend="xla")


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(BackendUnavailable, match="known: eager, sdpa, xformers, xla, auto"):
        zoo.build("llama-2-7b", TINY, backend="cudnn")


def test_flag_beats_environment_beats_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert zoo.build("llama-2-7b", TINY, init="meta").backend.name == "sdpa"  # auto on a CPU device
    monkeypatch.setenv("ZOO_BACKEND", "eager")
    assert zoo.build("llama-2-7b", TINY, init="meta").backend.name == "eager"
    assert zoo.build("llama-2-7b", TINY, init="meta", backend="sdpa").backend.name == "sdpa"
    assert "backend eager" in zoo.compile("llama-2-7b").explain()


def test_cli_backend_flag_and_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    assert main(["compile", "llama-2-7b", "--backend", "eager", "--explain"]) == 0
    assert "backend eager" in capsys.readouterr().out
    monkeypatch.setenv("ZOO_BACKEND", "xformers")
    assert main(["compile", "llama-2-7b"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_modules_never_branch_on_backend_names() -> None:
    root = Path(zoo.__file__).resolve().parents[1]
    offenders = []
    for folder in ("runtime", "compiler", "zoo"):
        for f in (root / folder).rglob("*.py"):
            if "backends" in f.parts:
                continue
            if re.search(r"""(backend(\.name)?|name)\s*==\s*["'](xformers|xla|sdpa|eager)["']""", f.read_text()):
                offenders.append(str(f))
    assert offenders == []


def _layout(**kw) -> AttentionLayout:  # type: ignore[no-untyped-def]
    base = dict(start=0, q_len=256, kv_len=256)
    base.update(kw)
    return AttentionLayout(**base)


def test_xla_kernel_selection_picks_pallas_only_where_it_applies() -> None:
    assert attention_kernel_for("TPU", _layout(), None, 128) == "pallas_flash"
    assert attention_kernel_for("CPU", _layout(), None, 128) == "xla_math"
    assert attention_kernel_for("TPU", _layout(), 64, 128) == "xla_math"  # sliding window
    assert attention_kernel_for("TPU", _layout(q_len=100, kv_len=100), None, 128) == "xla_math"  # block size
    assert attention_kernel_for("TPU", _layout(key_valid=torch.ones(1, 256, dtype=torch.bool)), None, 128) == "xla_math"
    assert attention_kernel_for("TPU", _layout(start=255, q_len=1), None, 128) == "xla_math"  # decode step


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("window", [None, 3])
def test_packed_sequences_equal_running_them_one_by_one(backend: str, window: int | None) -> None:
    extra = [f"arch.attention.sliding_window={window}"] if window else []
    m = zoo.build("llama-2-7b", TINY + extra, backend=backend, seed=2).eval()
    prompts = [torch.randint(0, 96, (n,)) for n in (5, 9, 3)]
    packed = torch.cat(prompts)[None]
    segments = torch.cat([torch.full((len(p),), i) for i, p in enumerate(prompts)])[None]
    with torch.no_grad():
        out = m(packed, segment_ids=segments)[0]
        alone = torch.cat([m(p[None])[0] for p in prompts])
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)


FAMILIES = ["llama-1-7b", "llama-2-7b", "llama-2-70b", "codellama-7b", "codellama-34b", "mtp-7b-200b-4", "tiny-code"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", available_backends())
def test_parity_matrix_prefill_and_decode(family: str, backend: str) -> None:
    device = "cuda" if backend == "xformers" else "cpu"
    kv = ["arch.attention.n_kv_heads=2"] if zoo.spec(family).arch.attention.n_kv_heads else []
    if zoo.spec(family).arch.heads.kind == "multi_token":
        kv.append("arch.heads.n_future=2")  # two of the tiny two layers are heads: all head, no trunk
    if zoo.spec(family).tokenizer.infill is not None:
        kv.append("tokenizer.infill=null")  # Code Llama's infilling ids are past the tiny vocabulary
    ref = zoo.build(family, TINY + kv, backend="eager", seed=5, device=device).eval()
    m = zoo.build(family, TINY + kv, backend=backend, seed=5, device=device).eval()
    tokens = torch.randint(0, 96, (2, 13), device=device)
    mask = torch.ones_like(tokens)
    mask[1, :4] = 0
    with torch.no_grad():
        torch.testing.assert_close(m(tokens), ref(tokens), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(m(tokens, attention_mask=mask), ref(tokens, attention_mask=mask), atol=1e-4, rtol=1e-4)
        caches = [x.new_cache(2, 20) for x in (m, ref)]
        for x, c in zip((m, ref), caches):
            x(tokens, attention_mask=mask, cache=c)
        step = torch.randint(0, 96, (2, 1), device=device)
        torch.testing.assert_close(m(step, cache=caches[0]), ref(step, cache=caches[1]), atol=1e-4, rtol=1e-4)
