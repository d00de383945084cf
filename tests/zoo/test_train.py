"""The trainer: learning, schedule, clipping, exact resume, pickle-free checkpoints that load as
models, the multi-token memory-efficient schedule, token streams and the `zoo train` command."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.train import Trainer, TrainConfig, TrainError, lr_at
from zoo.train import DataError, TokenStream
from zoo.train import TrainStateError, checkpoints

V = 64
TINY = ["arch.dim=32", "arch.n_layers=2", f"arch.vocab_size={V}", "arch.ffn.hidden_dim=64",
        "arch.attention.n_heads=2", "arch.max_seq_len=64"]
MULTI = ["arch.n_layers=3", "arch.heads={kind: multi_token, n_future: 2}"]


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Models this small run fastest on one thread; two spin against each other on a busy machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _model(extra: tuple[str, ...] = (), seed: int = 0) -> torch.nn.Module:
    return zoo.build("llama-2-7b", TINY + list(extra), seed=seed)


def _tokens(n: int = 4000) -> torch.Tensor:
    """A learnable stream: one fixed random motif of 37 tokens, repeated."""
    motif = torch.randint(0, V, (37,), generator=torch.Generator().manual_seed(1))
    return motif.repeat(n // 37 + 1)[:n]


def _trainer(model: torch.nn.Module | None = None, **cfg: object) -> Trainer:
    cfg = {"steps": 6, "lr": 3e-3, "warmup_steps": 2, **cfg}
    return Trainer(model or _model(), TokenStream(_tokens(), 16, 4, seed=3), TrainConfig(**cfg))  # type: ignore[arg-type]


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


# ---------------------------------------------------------------------------- learning
def test_loss_decreases_on_a_learnable_stream() -> None:
    train, held = TokenStream(_tokens(), 16, 4, seed=3).split(0.2)
    t = Trainer(_model(), train, TrainConfig(steps=30, lr=1e-2, warmup_steps=3), eval_data=held)
    before = t.evaluate()
    hist = t.fit(progress=False)
    after = t.evaluate()
    assert len(hist) == 30 and t.step == 30 and t.tokens_seen == 30 * 4 * 16
    assert np.mean([h.loss for h in hist[-5:]]) < np.mean([h.loss for h in hist[:5]]) - 1.0
    assert after.loss < before.loss - 1.0 and after.tokens == before.tokens


def test_lr_schedule_warmup_then_cosine() -> None:
    c = TrainConfig(steps=101, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(1e-4)  # the first step already moves
    assert lr_at(4, c) == pytest.approx(5e-4)
    assert lr_at(9, c) == pytest.approx(1e-3)  # end of warmup: the peak
    assert lr_at(10, c) == pytest.approx(1e-3)  # cosine starts at the peak
    assert lr_at(55, c) == pytest.approx(5.5e-4)  # halfway: mean of peak and floor
    assert lr_at(100, c) == pytest.approx(1e-4)  # last step: the floor
    assert lr_at(500, c) == pytest.approx(1e-4)  # flat after the end
    assert lr_at(0, TrainConfig(steps=10, lr=1e-3, warmup_steps=0)) == pytest.approx(1e-3)
    lrs = [lr_at(s, c) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_gradient_clipping_bounds_the_global_norm() -> None:
    t = _trainer(grad_clip=0.05)
    t.forward_backward()
    before = t.clip_gradients()
    after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in t.model.parameters() if p.grad is not None))
    assert before > 0.05 and after == pytest.approx(0.05, rel=1e-4)


def test_bad_config_and_data_raise_typed_errors() -> None:
    with pytest.raises(TrainError, match="accum_steps"):
        TrainConfig(accum_steps=0)
    with pytest.raises(TrainError, match="one head"):
        _trainer(memory_efficient=True)
    t = Trainer(_model(), TokenStream(torch.full((100,), V + 5), 8, 2), TrainConfig(steps=1))
    with pytest.raises(TrainError, match="vocab_size"):
        t.train_step()


# ---------------------------------------------------------------------------- checkpoints
def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    a = _trainer(steps=6, checkpoint_every=3, accum_steps=2)
    a.out = tmp_path / "a"
    hist_a = a.fit(progress=False)
    assert [p.name for p in checkpoints(tmp_path / "a")] == ["step-000003", "step-000006"]

    torch.manual_seed(1234)  # the checkpoint's RNG state must win over whatever the process has
    b = Trainer.resume(tmp_path / "a" / "step-000003", TokenStream(_tokens(), 16, 4, seed=3), out=tmp_path / "b")
    assert b.step == 3 and b.data.position == 6 and b.config.accum_steps == 2
    hist_b = b.fit(progress=False)
    assert [h.loss for h in hist_b] == [h.loss for h in hist_a[3:]]
    pa, pb = _params(a.model), _params(b.model)
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i][s], sb[i][s]) for i in sa for s in sa[i])
    # a run folder resumes from its newest checkpoint; other data is refused
    assert Trainer.resume(tmp_path / "a", TokenStream(_tokens(), 16, 4, seed=3)).step == 6
    with pytest.raises(DataError, match="same data"):
        Trainer.resume(tmp_path / "a", TokenStream(_tokens(3000), 16, 4, seed=3))
    with pytest.raises(TrainStateError, match="not a training checkpoint"):
        Trainer.resume(tmp_path, TokenStream(_tokens(), 16, 4))


def test_checkpoints_load_as_models_and_hold_no_pickle(tmp_path: Path) -> None:
    t = _trainer(_model(MULTI), steps=4, checkpoint_every=2, keep_last=1, log_every=1)
    t.out = tmp_path
    t.fit(progress=False)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-000004"]  # pruned to the newest
    folder = tmp_path / "step-000004"
    loaded = zoo.load(folder)
    tokens = _tokens()[:20][None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, all_heads=True), t.model(tokens, all_heads=True), rtol=0, atol=0)
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"step-000004/trainer/optimizer.safetensors", "step-000004/trainer/rng.safetensors",
            "step-000004/trainer/state.json", "metrics.jsonl"} <= files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle"))]
    assert not [f for f in files if "/." in f or f.startswith(".")]  # no temporary folders left
    state = json.loads((folder / "trainer" / "state.json").read_text())
    assert state["step"] == 4 and state["data"]["position"] == 4 and state["config"]["keep_last"] == 1


# ---------------------------------------------------------------------------- multi-token
def test_memory_efficient_schedule_trains_to_the_same_weights() -> None:
    plain = _trainer(_model(MULTI), steps=3, accum_steps=2)
    efficient = _trainer(_model(MULTI), steps=3, accum_steps=2, memory_efficient=True)
    hp, he = plain.fit(progress=False), efficient.fit(progress=False)
    assert [h.loss for h in hp] == pytest.approx([h.loss for h in he], rel=1e-5)
    pp, pe = _params(plain.model), _params(efficient.model)
    for k in pp:
        torch.testing.assert_close(pp[k], pe[k], rtol=1e-4, atol=1e-5)


def test_multi_token_evaluation_reports_every_head() -> None:
    train, held = TokenStream(_tokens(), 16, 4).split(0.2)
    t = Trainer(_model(MULTI), train, TrainConfig(steps=1), eval_data=held)
    ev = t.evaluate()
    assert len(ev.head_losses) == 2 and ev.loss == pytest.approx(sum(ev.head_losses))
    # it matches the training loss definition on the same batch
    batch = held.batch(0)
    with torch.no_grad():
        assert t.evaluate(max_batches=1).loss == pytest.approx(float(t.model.loss(batch)), rel=1e-5)


# ---------------------------------------------------------------------------- data
def test_token_stream_is_seeded_resumable_and_split_cleanly(tmp_path: Path) -> None:
    toks = np.arange(1000, dtype=np.uint16)
    path = tmp_path / "tokens.bin"
    toks.tofile(path)
    s = TokenStream.from_file(path, 9, 3, seed=5)
    assert torch.equal(s.batch(7), TokenStream(toks, 9, 3, seed=5).batch(7))
    assert not torch.equal(s.batch(7), TokenStream(toks, 9, 3, seed=6).batch(7))
    b = s.batch(2)
    assert b.shape == (3, 10) and b.dtype == torch.int64 and torch.equal(b[:, 1:] - b[:, :-1], torch.ones(3, 9).long())
    seq = TokenStream(toks, 9, 2, mode="sequential")
    assert seq.batch(0)[:, 0].tolist() == [0, 9] and seq.batch(1)[:, 0].tolist() == [18, 27]
    train, held = s.split(0.1)
    assert len(train) == 900 and int(held.batch(0).min()) >= 900 and held.mode == "sequential"
    assert max(max(train.starts(i)) for i in range(50)) + train.window <= 900
    s.next_batch()
    s.next_batch()
    other = TokenStream(toks, 9, 3, seed=5)
    other.load_state_dict(s.state_dict())
    assert torch.equal(other.next_batch(), s.next_batch())
    with pytest.raises(DataError, match="same data"):
        TokenStream(toks, 9, 4, seed=5).load_state_dict(s.state_dict())
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(DataError, match="whole number"):
        TokenStream.from_file(tmp_path / "odd.bin", 4, 1)
    np.save(tmp_path / "t.npy", toks.astype(np.int32))
    assert torch.equal(TokenStream.from_file(tmp_path / "t.npy", 9, 3, seed=5).batch(1), s.batch(1))


# ---------------------------------------------------------------------------- CLI
def test_cli_trains_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    _tokens(3000).numpy().astype(np.uint16).tofile(tmp_path / "tokens.bin")
    run = tmp_path / "run"
    common = ["--data", str(tmp_path / "tokens.bin"), "--no-progress"]
    args = parser.parse_args(["train", "llama-2-7b", *TINY, *common, "--steps", "2", "--out", str(run),
                              "--seq-len", "16", "--batch-size", "2", "--eval-fraction", "0.1", "--lr", "1e-3"])
    assert args.func(args) == 0
    args = parser.parse_args(["train", str(run), "--resume", "--steps", "3", "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "held-out loss" in out
    assert [p.name for p in checkpoints(run)] == ["step-000002", "step-000003"]
    with pytest.raises(TrainError, match="--resume"):
        args = parser.parse_args(["train", "llama-2-7b", *TINY, *common, "--steps", "2", "--out", str(run)])
        args.func(args)
