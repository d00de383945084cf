"""The single-device parts of zoo's distributed code on this machine's accelerator, under
`torchrun --nproc-per-node 1` (nccl on CUDA, gloo on CPU): what a multi-GPU run does, at world
size 1. scripts/gpu-check runs it on the CUDA machine; on a CPU it runs as well (--device cpu).

    torchrun --standalone --nproc-per-node 1 scripts/distributed_check.py --device cuda

1. tensor-parallel loading (`load_folder_tp` with tp=1): meta build, DTensor plan on a 1-rank
   mesh, sliced reads; logits equal the ordinary load's.
2. FSDP2 through the Trainer: 3 steps equal the unsharded Trainer's losses; a DCP checkpoint
   written and resumed (meta build, shards allocated) continues with the same next loss.
It prints each check's largest difference and exits non-zero when one is off.
What needs more than one device (tp >= 2 over NCCL, fsdp >= 2, the 2-D mesh) is tested on CPU
with gloo in tests/ (the `distributed` marker); the same code runs on NCCL.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.runtime.distributed import init_from_env, local_device  # noqa: E402

import zoo  # noqa: E402
from zoo.loading import load_folder_tp  # noqa: E402
from zoo.train import TokenStream, TrainConfig, Trainer  # noqa: E402

TINY = ["arch.dim=64", "arch.n_layers=2", "arch.vocab_size=128", "arch.ffn.hidden_dim=96",
        "arch.attention.n_heads=4", "arch.attention.n_kv_heads=2", "arch.max_seq_len=64"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = local_device(args.device)
    if not dist.is_initialized():
        if "WORLD_SIZE" not in __import__("os").environ:
            print("run under torchrun: torchrun --standalone --nproc-per-node 1 scripts/distributed_check.py")
            return 2
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    init_from_env(device)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        m = zoo.build("llama-2-7b", TINY, seed=0)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "norm" not in name:
                    p.normal_(0, 0.08)
        m.save(Path(tmp) / "m")
        x = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(0)).to(device)
        plain = zoo.load(Path(tmp) / "m", device=device, dtype="float32", backend="eager")
        tp = load_folder_tp(Path(tmp) / "m", None, 1, device=device, dtype=torch.float32, backend="eager")
        with torch.no_grad():
            d = (plain(x) - tp(x)).abs().max().item()
        print(f"tensor-parallel load (tp=1, DTensor on {device}): max |logit diff| {d:.2e}")
        ok &= d <= 1e-5

        def stream() -> TokenStream:
            return TokenStream(torch.randint(0, 128, (4000,), generator=torch.Generator().manual_seed(1)), 16, 4, seed=3)

        cfg = TrainConfig(steps=6, lr=3e-3, warmup_steps=2)
        ref = Trainer(zoo.build("llama-2-7b", TINY, seed=0, device=device), stream(), cfg)
        fs = Trainer(zoo.build("llama-2-7b", TINY, seed=0, device=device), stream(), cfg, fsdp=True,
                     out=Path(tmp) / "run")
        a = [ref.train_step().loss for _ in range(3)]
        b = [fs.train_step().loss for _ in range(3)]
        d = max(abs(u - v) for u, v in zip(a, b))
        print(f"FSDP2 training ({dist.get_backend()}, 1 rank): losses {[round(v, 6) for v in b]}, max diff {d:.2e}")
        ok &= d <= 1e-5
        fs.save_checkpoint()
        again = Trainer.resume(Path(tmp) / "run", stream(), device=device)
        d = abs(again.train_step().loss - ref.train_step().loss)
        print(f"DCP save + resume (meta build, shards allocated): next loss diff {d:.2e}")
        ok &= d <= 1e-5
    print("needs more than one device (tested on CPU with gloo: pytest -m distributed): tp >= 2, fsdp >= 2, "
          "the tp x fsdp mesh, BTX experts on separate ranks")
    dist.destroy_process_group()
    print("distributed check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
