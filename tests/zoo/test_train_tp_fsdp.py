"""TP x FSDP on a 2-D mesh through the Trainer: 4 gloo processes (2 data-parallel x 2
tensor-parallel, torch.multiprocessing spawn): each block's linears split by the sharding plan
(DTensor on the "tp" dim) and then sharded by FSDP2 on the "dp" dim; the loss curve equals the
1-process run at the same global batch and seed, and the DCP checkpoint resumes in one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import zoo
from tests.spawned import spawn_ranks
from zoo.cli.main import build_parser
from zoo.train import TokenStream, TrainConfig, Trainer, TrainError

pytestmark = pytest.mark.distributed

V = 64
TINY = ["arch.dim=32", "arch.n_layers=2", f"arch.vocab_size={V}", "arch.ffn.hidden_dim=64",
        "arch.attention.n_heads=2", "arch.max_seq_len=64"]
CFG = {"steps": 6, "lr": 3e-3, "warmup_steps": 2}
STEPS = 4
LIMIT_S = 90  # 4 processes on CI's 2 cores


def _stream() -> TokenStream:
    tokens = torch.randint(0, V, (4000,), generator=torch.Generator().manual_seed(1))
    return TokenStream(tokens, 16, 4, seed=3)  # global batch 4: 2 rows per data-parallel rank


def _model() -> torch.nn.Module:
    return zoo.build("llama-2-7b", TINY, seed=0)


def _worker(rank: int, world: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    try:
        trainer = Trainer(_model(), _stream(), TrainConfig(**CFG), out=Path(out) / "run", fsdp=True, tp=2)
        q = trainer.model.blocks[0].attn.q.weight  # (32 out, 32 in): 16 rows per tp rank, 8 per (dp, tp) rank
        assert q.device_mesh.mesh_dim_names == ("dp", "tp") and q.to_local().shape == (8, 32)
        assert trainer.model.blocks[0].attn.cfg.n_heads == 1  # each tp rank attends with its own head
        losses = [trainer.train_step().loss for _ in range(STEPS)]
        trainer.save_checkpoint()
        if rank == 0:
            (Path(out) / "losses.json").write_text(json.dumps(losses))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def run_2x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tp_fsdp")
    spawn_ranks(_worker, (4, str(out)), 4, LIMIT_S, "the 2x2 TP x FSDP run")
    return out


def test_2x2_mesh_losses_equal_the_one_process_run(run_2x2: Path) -> None:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = Trainer(_model(), _stream(), TrainConfig(**CFG))
        expect = [ref.train_step().loss for _ in range(STEPS)]
        losses = json.loads((run_2x2 / "losses.json").read_text())
        assert losses == pytest.approx(expect, abs=1e-5) and losses[-1] < losses[0]
        resumed = Trainer.resume(run_2x2 / "run", _stream(), out=run_2x2 / "resumed")  # one process reads the 2-D shards
        assert resumed.step == STEPS and not resumed.sharded
        assert resumed.train_step().loss == pytest.approx(ref.train_step().loss, abs=1e-5)
    finally:
        torch.set_num_threads(saved)


def test_tp_needs_fsdp_and_the_right_number_of_processes(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="fsdp=True"):
        Trainer(_model(), _stream(), TrainConfig(**CFG), tp=2)
    data = tmp_path / "t.bin"
    data.write_bytes(bytes(2000))
    for flags, msg in ((["--tp", "2"], "give --fsdp M as well"), (["--fsdp", "2", "--tp", "2"], "needs 4 processes"),
                       (["--tp", "0"], "--tp must be >= 1")):
        args = build_parser().parse_args(["train", "llama-2-7b", *TINY, "--data", str(data), "--steps", "1",
                                          "--out", str(tmp_path / "run"), *flags])
        with pytest.raises(TrainError, match=msg):
            args.func(args)
