"""Branch-Train-MiX: branching copies a seed, mixing puts each expert's FFN in its MoE slot and
averages the rest, mixes of identical models equal the seed (BTX, BTM, upcycling), mismatched
models are refused by key, the mixed model trains with the load-balancing loss, round-trips
through the Hub and runs in transformers' Mixtral with equal logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo.recipes.btx import Ensemble, MergeError, branch, check_compatible, mix, moe_spec
from zoo.checkpoint import CheckpointError
from zoo.cli import main as cli
from zoo.train import TrainConfig, Trainer
from zoo.train import TokenStream

V = 64
TINY = ["arch.dim=32", "arch.n_layers=2", f"arch.vocab_size={V}", "arch.ffn.hidden_dim=48",
        "arch.attention.n_heads=2", "arch.max_seq_len=64"]
TOKENS = torch.randint(0, V, (2, 13), generator=torch.Generator().manual_seed(0))
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def seed_model(*extra: str, scale: float = 5.0) -> Any:
    """A tiny dense model with weights large enough for logits (and routing) to be far from uniform."""
    m = zoo.build("llama-2-7b", TINY + list(extra), backend="eager", seed=1).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return m


def perturbed(m: Any, seed: int) -> Any:
    """A copy of `m` with every parameter moved by its own noise: a 'trained' branch."""
    out = zoo.build(m.spec, backend="eager", seed=0).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (name, p), q in zip(out.named_parameters(), m.parameters()):
            p.copy_(q + 0.1 * torch.randn(q.shape, generator=g))
    return out


def logits(model: Any, tokens: torch.Tensor = TOKENS) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return getattr(out, "logits", out)


def same_params(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- branch
def test_branch_makes_n_identical_copies(tmp_path: Path) -> None:
    seed = seed_model()
    seed.save(tmp_path / "seed")
    paths = branch(tmp_path / "seed", 3, tmp_path / "experts", progress=False)
    assert [p.name for p in paths] == ["expert-0", "expert-1", "expert-2"]
    for p in paths:
        assert same_params(zoo.load(p, verify=True), seed)
        assert sorted(f.name for f in p.iterdir()) == sorted(f.name for f in (tmp_path / "seed").iterdir())
    assert not [p for p in (tmp_path / "experts").iterdir() if p.name.startswith(".")]  # no temporary folders
    with pytest.raises(CheckpointError, match="expert-0 exists"):
        branch(tmp_path / "seed", 2, tmp_path / "experts")
    assert len(branch(tmp_path / "seed", 2, tmp_path / "experts", overwrite=True, progress=False)) == 2


def test_branch_from_a_training_run_or_a_transformers_folder(tmp_path: Path) -> None:
    from zoo.formats.export import export_hf

    seed = seed_model(scale=1.0)
    t = Trainer(seed, TokenStream(torch.arange(400) % V, 8, 2), TrainConfig(steps=1, warmup_steps=1), out=tmp_path / "run")
    t.fit(progress=False)
    copies = branch(tmp_path / "run", 2, tmp_path / "a", progress=False)  # the run's newest step
    assert same_params(zoo.load(copies[1]), seed)
    assert not (copies[0] / "trainer").exists()  # a branch starts its own run: no optimizer state
    export_hf(seed, tmp_path / "hf")  # no zoo.yaml: loaded once, saved as expert-0, copied
    copies = branch(tmp_path / "hf", 2, tmp_path / "b", progress=False)
    assert all(same_params(zoo.load(p), seed) for p in copies)


# ---------------------------------------------------------------------------- mix
def test_btx_puts_each_experts_ffn_in_its_slot_and_averages_the_rest() -> None:
    seed = seed_model()
    experts = [perturbed(seed, s) for s in (1, 2, 3)]
    moe = mix(experts, top_k=2, aux_loss_coef=0.05, progress=False)
    ffn = moe.spec.arch.ffn
    assert (ffn.kind, ffn.n_experts, ffn.top_k, ffn.router.aux_loss_coef) == ("moe", 3, 2, 0.05)
    assert ffn.expert == seed.spec.arch.ffn and moe.spec.weights is None
    state, dense = moe.state_dict(), [e.state_dict() for e in experts]
    for i in range(2):
        for proj in ("gate", "up", "down"):
            stacked = state[f"blocks.{i}.ffn.experts.{proj}"]
            assert stacked.shape[0] == 3
            for e in range(3):
                assert torch.equal(stacked[e], dense[e][f"blocks.{i}.ffn.{proj}.weight"])
        router = state[f"blocks.{i}.ffn.router.weight"]
        assert router.shape == (3, 32) and 0 < router.std() < 0.05  # new: small random normal
    shared = [k for k in dense[0] if ".ffn." not in k]
    assert {"embed.weight", "output.weight", "norm.weight", "blocks.1.attn.q.weight",
            "blocks.0.ffn_norm.weight"} <= set(shared)
    for k in shared:
        torch.testing.assert_close(state[k], sum(d[k] for d in dense) / 3, atol=1e-6, rtol=1e-6)
    assert set(state) == set(shared) | {f"blocks.{i}.ffn.{s}" for i in range(2)
                                        for s in ("experts.gate", "experts.up", "experts.down", "router.weight")}
    out = logits(moe)
    assert out.shape == (2, 13, V) and torch.isfinite(out).all()
    loss = moe.loss(TOKENS)
    assert torch.isfinite(loss) and moe.last_aux_loss > 0


@pytest.mark.parametrize("top_k,router_init", [(1, "normal"), (2, "normal"), (3, "normal"), (2, "zero")])
def test_btx_of_identical_experts_equals_the_seed(top_k: int, router_init: str) -> None:
    """Renormalized top-k weights sum to 1, so an MoE of identical experts is the dense FFN."""
    seed = seed_model()
    moe = mix([seed, seed, seed], top_k=top_k, router_init=router_init, router_std=1.0, progress=False)
    assert moe.spec.arch.ffn.top_k == top_k
    torch.testing.assert_close(logits(moe), logits(seed), atol=1e-5, rtol=1e-5)


def test_upcycling_one_model_equals_it() -> None:
    seed = seed_model()
    up = mix([seed], mode="upcycle", n_experts=4, top_k=2, router_std=1.0, progress=False)
    assert (up.spec.arch.ffn.n_experts, up.spec.arch.ffn.top_k) == (4, 2)
    stacked = up.state_dict()["blocks.1.ffn.experts.up"]
    assert all(torch.equal(stacked[e], seed.state_dict()["blocks.1.ffn.up.weight"]) for e in range(4))
    torch.testing.assert_close(logits(up), logits(seed), atol=1e-5, rtol=1e-5)


def test_btm_averages_every_parameter_and_identical_models_give_the_seed() -> None:
    seed = seed_model()
    btm = mix([seed, seed, seed], mode="btm", progress=False)
    assert btm.spec.arch == seed.spec.arch and same_params(btm, seed)  # exact: float64 accumulation
    assert torch.equal(logits(btm), logits(seed))
    a, b = perturbed(seed, 1), perturbed(seed, 2)
    weighted = mix([a, b], mode="btm", weights=[3, 1], progress=False)
    for k, v in weighted.state_dict().items():
        torch.testing.assert_close(v, 0.75 * a.state_dict()[k] + 0.25 * b.state_dict()[k], atol=1e-6, rtol=1e-6)
    ens = Ensemble([seed, seed]).eval()  # BTM's ensemble: a mixture of identical members is the member
    torch.testing.assert_close(logits(ens), torch.log_softmax(logits(seed), -1), atol=1e-5, rtol=1e-5)
    ens = Ensemble([a, b], weights=[3, 1]).eval()
    want = torch.log(0.75 * torch.softmax(logits(a), -1) + 0.25 * torch.softmax(logits(b), -1))
    torch.testing.assert_close(logits(ens), want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert float(ens.loss(TOKENS)) > 0


def test_mismatched_models_are_refused_naming_the_key() -> None:
    seed = seed_model()
    with pytest.raises(MergeError, match=r"arch\.ffn\.hidden_dim is 64 there, 48") as err:
        mix([seed, seed_model("arch.ffn.hidden_dim=64")], progress=False)
    assert err.value.key == "arch.ffn.hidden_dim" and isinstance(err.value, zoo.ZooError)
    with pytest.raises(MergeError, match=r"arch\.n_layers") as err:
        mix([seed, seed, seed_model("arch.n_layers=3")], mode="btm", progress=False)
    assert "model 2" in str(err.value)
    odd = seed_model()
    odd.register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    with pytest.raises(MergeError, match=r"parameter extra has shape \(3,\) there, None") as err:
        check_compatible([seed, odd])
    assert err.value.key == "extra"
    renamed = seed_model()
    renamed.spec = renamed.spec.model_copy(update={"name": "other", "description": "x", "weights": None})
    check_compatible([seed, renamed])  # provenance is not architecture


def test_bad_merge_requests_are_typed_errors() -> None:
    seed = seed_model()
    with pytest.raises(MergeError, match="ONE dense model"):
        mix([seed, seed], mode="upcycle", n_experts=4)
    with pytest.raises(MergeError, match="needs n_experts"):
        mix([seed], mode="upcycle")
    with pytest.raises(MergeError, match="at least two"):
        mix([seed])
    with pytest.raises(MergeError, match="top_k"):
        mix([seed, seed], top_k=3)
    with pytest.raises(MergeError, match="averaging weights"):
        mix([seed, seed], weights=[1.0])
    with pytest.raises(MergeError, match="already a mixture"):
        moe_spec(mix([seed, seed], progress=False).spec, 2)
    with pytest.raises(MergeError, match="biases"):
        moe_spec(zoo.spec("llama-2-7b", TINY + ["arch.ffn={kind: gelu-mlp, hidden_dim: 48}"]), 2)


def test_per_layer_ffn_overrides_become_moe_too() -> None:
    seed = seed_model('arch.layers={"1": {ffn: {kind: geglu, hidden_dim: 40}}}')
    moe = mix([perturbed(seed, 1), perturbed(seed, 2)], progress=False)
    b0, b1 = moe.spec.arch.block(0).ffn, moe.spec.arch.block(1).ffn
    assert (b0.kind, b0.expert.kind, b1.kind, b1.expert.kind, b1.hidden_dim) == ("moe", "swiglu", "moe", "geglu", 40)
    assert moe.state_dict()["blocks.1.ffn.experts.gate"].shape == (2, 40, 32)
    assert torch.isfinite(logits(moe)).all()


# ---------------------------------------------------------------------------- finetune
def _motif(n: int = 3000) -> torch.Tensor:
    motif = torch.randint(0, V, (37,), generator=torch.Generator().manual_seed(1))
    return motif.repeat(n // 37 + 1)[:n]


def test_moe_finetune_trains_with_the_load_balancing_loss(tmp_path: Path) -> None:
    seed = seed_model(scale=1.0)
    moe = mix([perturbed(seed, 1), perturbed(seed, 2), perturbed(seed, 3)], progress=False)
    router = moe.state_dict()["blocks.0.ffn.router.weight"].clone()
    t = Trainer(moe, TokenStream(_motif(), 16, 4, seed=3), TrainConfig(steps=25, lr=1e-2, warmup_steps=2, log_every=1),
                out=tmp_path / "ft")
    hist = t.fit(progress=False)
    assert sum(h.loss for h in hist[-5:]) / 5 < sum(h.loss for h in hist[:5]) / 5 - 0.5
    assert all(h.aux_loss is not None and h.aux_loss > 0 for h in hist)
    assert not torch.equal(moe.state_dict()["blocks.0.ffn.router.weight"], router)  # the router trains
    records = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["aux_loss"] > 0 for r in records)
    again = zoo.load(tmp_path / "ft" / "step-000025")
    assert again.spec.arch.ffn.kind == "moe" and same_params(again, moe)


def test_cli_branch_mix_and_train_the_mixed_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    seed_model(scale=1.0).save(tmp_path / "seed")
    assert cli(["btx", "branch", str(tmp_path / "seed"), "-n", "2", str(tmp_path / "experts"), "--no-progress"]) == 0
    experts = sorted(str(p) for p in (tmp_path / "experts").iterdir())
    assert cli(["btx", "mix", *experts, "--out", str(tmp_path / "btx"), "--top-k", "1", "--no-progress"]) == 0
    assert cli(["btx", "mix", *experts, "--out", str(tmp_path / "btm"), "--mode", "btm", "--weights", "1,3",
                "--no-progress"]) == 0
    assert cli(["btx", "mix", str(tmp_path / "seed"), "--out", str(tmp_path / "up"), "--mode", "upcycle",
                "--n-experts", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "moe 2x swiglu 48, top-1" in out and "moe 3x swiglu 48, top-2" in out
    btx = zoo.load(tmp_path / "btx")
    assert (btx.spec.arch.ffn.n_experts, btx.spec.arch.ffn.top_k) == (2, 1)
    assert zoo.load(tmp_path / "btm").spec.arch.ffn.kind == "swiglu"
    assert zoo.load(tmp_path / "up").spec.arch.ffn.n_experts == 3
    # mixing refuses to overwrite, and a mismatch exits 2 naming the key
    assert cli(["btx", "mix", *experts, "--out", str(tmp_path / "btx"), "--no-progress"]) == 2
    seed_model("arch.ffn.hidden_dim=64").save(tmp_path / "wide")
    assert cli(["btx", "mix", experts[0], str(tmp_path / "wide"), "--out", str(tmp_path / "bad"),
                "--no-progress"]) == 2
    assert "arch.ffn.hidden_dim" in capsys.readouterr().err
    # the MoE finetune is `zoo train` on the mixed folder
    _motif().numpy().astype(np.uint16).tofile(tmp_path / "tokens.bin")
    assert cli(["train", str(tmp_path / "btx"), "--data", str(tmp_path / "tokens.bin"), "--steps", "2", "--out",
                str(tmp_path / "ft"), "--seq-len", "16", "--batch-size", "2", "--no-progress"]) == 0
    assert zoo.load(tmp_path / "ft" / "step-000002").spec.arch.ffn.kind == "moe"


# ---------------------------------------------------------------------------- interop
def test_mixed_model_round_trips_through_the_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.hub_server import HubServer, hub_env

    seed = seed_model()
    moe = mix([perturbed(seed, 1), perturbed(seed, 2)], progress=False)
    with HubServer(tokens={"hf_alice": "alice"}, lfs_threshold=4096) as server:
        hub_env(monkeypatch, server, tmp_path / "hub-cache", token="hf_alice")
        moe.save(tmp_path / "btx")
        zoo.push(tmp_path / "btx", "alice/tiny-btx")
        got = zoo.load("alice/tiny-btx", backend="eager")
    assert got.spec == moe.spec and same_params(got, moe)
    torch.testing.assert_close(logits(got), logits(moe), atol=0, rtol=0)


def test_mixed_model_exports_to_mixtral_with_equal_logits(tmp_path: Path) -> None:
    from transformers import MixtralForCausalLM

    from zoo.formats.export import export_hf

    seed = seed_model()
    moe = mix([perturbed(seed, 1), perturbed(seed, 2), perturbed(seed, 3)], router_std=1.0, progress=False)
    export_hf(moe, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (cfg["model_type"], cfg["num_local_experts"], cfg["num_experts_per_tok"]) == ("mixtral", 3, 2)
    ref = MixtralForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").float().eval()
    theirs = logits(ref)
    assert theirs.abs().max() > 1.0
    torch.testing.assert_close(logits(moe), theirs, atol=1e-4, rtol=1e-4)
