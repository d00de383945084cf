"""FSDP2 training through the Trainer on 2 gloo processes (torch.multiprocessing spawn): the loss
curve equals the 1-process run at the same global batch and seed, DCP checkpoints saved by 2
ranks resume in 1 process and continue the run, and convert to a zoo folder with equal logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

import zoo
from tests.spawned import spawn_ranks
from zoo.cli.main import build_parser
from zoo.train import TokenStream, TrainConfig, Trainer, TrainError
from zoo.train.distributed import dcp_to_folder, is_dcp

pytestmark = pytest.mark.distributed

V = 64
TINY = ["arch.dim=32", "arch.n_layers=2", f"arch.vocab_size={V}", "arch.ffn.hidden_dim=64",
        "arch.attention.n_heads=2", "arch.max_seq_len=64"]
CFG = {"steps": 6, "lr": 3e-3, "warmup_steps": 2}
STEPS = 4
LIMIT_S = 50  # the spawned run; CI has 2 cores


def _tokens(n: int = 4000) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(1))


def _stream() -> TokenStream:
    return TokenStream(_tokens(), 16, 4, seed=3)  # global batch 4: 2 rows per rank


def _model() -> torch.nn.Module:
    return zoo.build("llama-2-7b", TINY, seed=0)


def _worker(rank: int, world: int, out: str) -> None:
    torch.set_num_threads(1)  # a file rendezvous: no port to collide with other tests
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    try:
        trainer = Trainer(_model(), _stream(), TrainConfig(**CFG), out=Path(out) / "run", fsdp=True)
        weight = trainer.model.blocks[0].attn.q.weight
        assert trainer.sharded and isinstance(weight, DTensor) and weight.to_local().shape[0] * 2 == weight.shape[0]
        losses = [trainer.train_step().loss for _ in range(STEPS)]
        trainer.save_checkpoint()
        again = Trainer.resume(Path(out) / "run", _stream(), out=Path(out) / "again")  # 2 ranks: shards again
        assert again.sharded and again.step == STEPS
        resumed_loss = again.train_step().loss
        mixed = Trainer(_model(), _stream(), TrainConfig(**CFG), fsdp=True, mixed_precision=True)
        mixed_loss = mixed.train_step().loss
        assert all(p.dtype == torch.float32 for p in mixed.model.parameters())  # bf16 only for compute
        if rank == 0:
            (Path(out) / "losses.json").write_text(json.dumps(losses))
            (Path(out) / "mixed.json").write_text(json.dumps(mixed_loss))
            (Path(out) / "resumed.json").write_text(json.dumps(resumed_loss))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    spawn_ranks(_worker, (2, str(out)), 2, LIMIT_S, "2-rank FSDP run")
    return out


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _reference(steps: int) -> list[float]:
    trainer = Trainer(_model(), _stream(), TrainConfig(**CFG))
    return [trainer.train_step().loss for _ in range(steps)]


def test_two_rank_losses_equal_the_one_process_run(fsdp_run: Path) -> None:
    losses = json.loads((fsdp_run / "losses.json").read_text())
    ref = _reference(STEPS)
    assert len(losses) == STEPS
    assert losses == pytest.approx(ref, abs=1e-5)
    assert losses[-1] < losses[0]
    assert json.loads((fsdp_run / "mixed.json").read_text()) == pytest.approx(ref[0], abs=0.05)  # bf16 params


def test_dcp_checkpoint_resumes_in_one_process(fsdp_run: Path) -> None:
    step = fsdp_run / "run" / f"step-{STEPS:06d}"
    assert is_dcp(step) and not (step / "model.safetensors").exists()
    resumed = Trainer.resume(fsdp_run / "run", _stream(), out=fsdp_run / "resumed")
    assert resumed.step == STEPS and not resumed.sharded
    nxt = resumed.train_step().loss
    assert nxt == pytest.approx(_reference(STEPS + 1)[-1], abs=1e-5)
    assert json.loads((fsdp_run / "resumed.json").read_text()) == pytest.approx(nxt, abs=1e-5)  # resumed on 2 ranks


def test_dcp_checkpoint_converts_to_a_zoo_folder(fsdp_run: Path, tmp_path: Path) -> None:
    step = fsdp_run / "run" / f"step-{STEPS:06d}"
    folder = dcp_to_folder(step, tmp_path / "model")
    loaded = zoo.load(folder)
    trainer = Trainer(_model(), _stream(), TrainConfig(**CFG))
    for _ in range(STEPS):
        trainer.train_step()
    x = _tokens()[:17].unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(loaded(x), trainer.model(x), atol=1e-5)


def _cli(*args: str, torchrun: bool = False) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, "-m", "zoo", *args], capture_output=True, text=True, timeout=LIMIT_S, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_cli_fsdp_run_resumes_in_one_process_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """`torchrun ... zoo train --fsdp 2` for 2 steps, `zoo train RUN --resume` for the 3rd in one
    process: the metrics equal a plain 3-step run's; `zoo convert` reads the DCP folder."""
    np.asarray(_tokens(), dtype=np.uint16).tofile(tmp_path / "t.bin")
    common = ["--data", str(tmp_path / "t.bin"), "--batch-size", "4", "--seq-len", "16", "--log-every", "1",
              "--no-progress", "--warmup", "2", "--lr", "3e-3"]
    _cli("train", "llama-2-7b", *TINY, *common, "--steps", "2", "--out", str(tmp_path / "a"), "--fsdp", "2",
         torchrun=True)
    _cli("train", str(tmp_path / "a"), "--resume", "--steps", "3")
    curve = [json.loads(line)["loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    plain = Trainer(_model(), TokenStream(_tokens(), 16, 4, seed=0), TrainConfig(steps=3, lr=3e-3, warmup_steps=2))
    assert curve == pytest.approx([plain.train_step().loss for _ in range(3)], abs=1e-5)  # the CLI's seed is 0
    _cli("convert", str(tmp_path / "a" / "step-000002"), "--to", "zoo", str(tmp_path / "c"))
    assert (tmp_path / "c" / "zoo.yaml").is_file() and zoo.load(tmp_path / "c").spec.arch.dim == 32


def test_fsdp_without_a_process_group_says_how_to_launch(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="torchrun"):
        Trainer(_model(), _stream(), TrainConfig(**CFG), fsdp=True)
    np.asarray(_tokens(), dtype=np.uint16).tofile(tmp_path / "t.bin")
    args = build_parser().parse_args(["train", "llama-2-7b", *TINY, "--data", str(tmp_path / "t.bin"), "--steps", "1",
                                      "--out", str(tmp_path / "run"), "--fsdp", "2"])
    with pytest.raises(TrainError, match="--nproc-per-node 2"):
        args.func(args)
