"""The sharding plan pass: each kind's tensor-parallel plan (column-/row-parallel linears,
heads per rank, vocab-parallel embedding and output, MoE experts cut on the hidden dim), the
per-rank figures, the errors for a model that does not split, and `zoo show/compile --tp`."""

from __future__ import annotations

import pytest

import zoo
from zoo.cli.main import main
from zoo.compiler.errors import SpecError, UsageError
from zoo.compiler.passes.sharding import plan_sharding


def plan(name: str, tp: int, fsdp: int = 1, *overrides: str):
    return plan_sharding(zoo.compile(name, list(overrides)).ir, tp, fsdp)


def test_llama_2_7b_at_tp_2() -> None:
    p = plan("llama-2-7b", 2)
    styles = {n: (pp.shard.style, pp.shard.dim) for n, pp in p.params.items()}
    assert styles["blocks.0.attn.q.weight"] == ("colwise", 0)
    assert styles["blocks.0.attn.k.weight"] == ("colwise", 0)
    assert styles["blocks.31.attn.v.weight"] == ("colwise", 0)
    assert styles["blocks.0.attn.o.weight"] == ("rowwise", 1)
    assert styles["blocks.0.ffn.gate.weight"] == styles["blocks.0.ffn.up.weight"] == ("colwise", 0)
    assert styles["blocks.0.ffn.down.weight"] == ("rowwise", 1)
    assert styles["embed.weight"] == styles["output.weight"] == ("vocab", 0)
    assert styles["blocks.0.attn_norm.weight"] == styles["norm.weight"] == ("replicate", None)
    assert p.params["blocks.0.attn.k.weight"].local_shape(2) == (2048, 4096)
    assert p.params["blocks.0.attn.o.weight"].local_shape(2) == (4096, 2048)
    assert p.total_params == 6_738_415_616
    # everything but the norms is split: a rank holds half, plus the replicated norms
    norms = sum(pp.numel for pp in p.params.values() if pp.shard.dim is None)
    assert norms == (2 * 32 + 1) * 4096
    assert p.tp_rank_params * 2 == p.total_params + norms
    assert p.kv_elems_per_token == 32 * 2 * 128 * 32 // 2  # layers * (k, v) * head_dim * heads / tp
    assert p.fsdp_units == [f"blocks.{i}" for i in range(32)]


def test_llama_2_70b_gqa_at_tp_8_and_fsdp() -> None:
    p = plan("llama-2-70b", 8)
    assert p.params["blocks.0.attn.k.weight"].local_shape(8) == (128, 8192)  # one kv head per rank
    assert p.kv_elems_per_token == 80 * 2 * 128  # 8 kv heads / 8 ranks
    sharded = sum(pp.numel for pp in p.params.values() if pp.shard.dim is not None)
    local = sum(pp.local_numel(8) for pp in p.params.values() if pp.shard.dim is not None)
    assert local * 8 == sharded
    assert p.rank_bytes("bfloat16") / p.total_params / 2 == pytest.approx(1 / 8, rel=1e-3)
    p16 = plan("llama-2-70b", 8, 2)
    assert p16.rank_params == pytest.approx(p.rank_params / 2, rel=1e-4)  # FSDP halves each rank's slice


def test_mixtral_experts_split_on_the_hidden_dim() -> None:
    p = plan("mixtral-8x7b", 8)
    gate, down = p.params["blocks.0.ffn.experts.gate"], p.params["blocks.0.ffn.experts.down"]
    assert gate.shape == (8, 14336, 4096) and gate.local_shape(8) == (8, 1792, 4096)
    assert down.local_shape(8) == (8, 4096, 1792)
    assert p.params["blocks.0.ffn.router.weight"].shard.dim is None
    assert p.kv_elems_per_token == 32 * 2 * 128  # 8 kv heads, one per rank


def test_the_multi_token_heads_are_blocks_too() -> None:
    p = plan("mtp-7b-1t-4", 4)
    assert p.params["heads.0.attn.q.weight"].shard.style == "colwise"
    assert p.params["heads.3.ffn.down.weight"].shard.style == "rowwise"
    assert [u for u in p.fsdp_units if u.startswith("heads.")] == [f"heads.{j}" for j in range(4)]
    sharded = [pp for pp in p.params.values() if pp.shard.dim is not None]
    assert sum(pp.local_numel(4) for pp in sharded) * 4 == sum(pp.numel for pp in sharded)


def test_tp_1_holds_everything() -> None:
    p = plan("tiny-code", 1)
    assert p.rank_params == p.tp_rank_params == p.total_params == zoo.compile("tiny-code").accounting.params


@pytest.mark.parametrize("name,tp,field", [
    ("llama-2-70b", 16, "blocks.0.attn.n_kv_heads"),  # 8 kv heads
    ("llama-2-7b", 64, "blocks.0.attn.n_heads"),  # 32 heads (32000 vocab divides by 64)
])
def test_heads_that_do_not_divide(name: str, tp: int, field: str) -> None:
    with pytest.raises(SpecError) as e:
        plan(name, tp)
    assert e.value.problems[0].path == field and f"tp ({tp})" in str(e.value)


def test_a_vocab_that_does_not_divide() -> None:
    with pytest.raises(SpecError, match=r"vocab_size: 32001 is not divisible by tp \(2\)"):
        plan("llama-2-7b", 2, 1, "arch.vocab_size=32001")


def test_an_ffn_that_does_not_divide() -> None:
    with pytest.raises(SpecError) as e:
        plan("llama-2-7b", 2, 1, "arch.ffn.hidden_dim=11007")
    assert e.value.problems[0].path == "blocks.0.ffn.hidden_dim"


def test_tp_and_fsdp_are_counts() -> None:
    with pytest.raises(UsageError, match="tp must be"):
        plan("tiny-code", 0)


def test_show_and_compile_print_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "llama-2-70b", "--tp", "8", "--fsdp", "2"]) == 0
    out = capsys.readouterr().out
    assert "tp 8 x fsdp 2 = 16 ranks" in out and "GiB bf16" in out and "KV per token     40,960 bytes" in out
    assert "blocks.*.attn.o.weight" in out and "rowwise" in out
    assert main(["compile", "mixtral-8x7b", "--tp", "2"]) == 0
    assert "blocks.*.ffn.experts.down" in capsys.readouterr().out
    assert main(["show", "llama-2-70b", "--tp", "16"]) == 2
    assert "n_kv_heads: 8 is not divisible by tp (16)" in capsys.readouterr().err
    assert main(["show", "llama-2-7b"]) == 0
    assert "sharding" not in capsys.readouterr().out
