"""Peak memory per rank of tensor-parallel loading: does each rank hold only its 1/N?

    python bench/tp_memory.py                 # a ~540M-parameter Llama, float32 (~2.2 GB), tp 1, 2
    python bench/tp_memory.py --small         # ~20M parameters: seconds
    python bench/tp_memory.py --tp 1 2 4      # more ranks (each a process; gloo on this CPU)

The script saves one checkpoint in each layout zoo writes for a Llama: transformers' (q/k rows
permuted: each such tensor is read whole, un-permuted and sliced, one at a time) and zoo's
canonical one (every split tensor read as a slice with safetensors' `get_slice`). For each
layout and tp it starts tp fresh processes under a gloo group (torch.multiprocessing spawn);
each rank records its peak RSS (VmHWM) before the load (interpreter, torch, the process group)
and after `zoo.load(folder, tp=N)` has returned and every weight has been read, and its private
(anonymous) and file-backed RSS then (a float32 tp=1 load maps the file: its weights are
file pages). tp=1 is the ordinary one-process `zoo.load`.

It prints, per layout and tp, the bytes the load added per rank (max over ranks), what the
sharding plan says one rank holds, and their ratio; ~1 means each rank held only its share
plus a constant.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.compiler.passes.sharding import plan_sharding  # noqa: E402

import zoo  # noqa: E402

LARGE = ["arch.dim=2048", "arch.n_layers=8", "arch.attention.n_heads=16", "arch.attention.n_kv_heads=8",
         "arch.ffn.hidden_dim=5632", "arch.vocab_size=32000", "arch.max_seq_len=2048"]
SMALL = ["arch.dim=512", "arch.n_layers=4", "arch.attention.n_heads=8", "arch.attention.n_kv_heads=4",
         "arch.ffn.hidden_dim=1536", "arch.vocab_size=8192", "arch.max_seq_len=512"]


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes: VmHWM (peak RSS of this process image: unlike
    ru_maxrss it does not carry the parent's peak across spawn's exec), RssAnon, RssFile."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _touch(net: torch.nn.Module) -> int:
    """Read every weight (a mapped file's pages count once touched); the bytes this rank holds."""
    held = 0
    with torch.no_grad():
        for p in net.parameters():
            t = p.to_local() if hasattr(p, "to_local") else p
            t.float().sum()
            held += t.numel() * t.element_size()
    return held


def rank_main(rank: int, world: int, store: str, folder: str, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    before = _status("VmHWM")
    net = zoo.load(folder, tp=world, dtype="float32")
    held = _touch(net)
    after = _status("VmHWM")
    Path(f"{out}.{rank}").write_text(f"{before} {after} {_status('RssAnon')} {_status('RssFile')} {held}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def measure(folder: Path, tp: int, work: Path) -> tuple[int, int, int, int]:
    """Max over ranks of: the peak RSS the load added, the private and the file-backed RSS
    after it, the parameter bytes held."""
    out = work / f"r{tp}"
    store = work / f"store{tp}"
    store.unlink(missing_ok=True)
    mp.spawn(rank_main, args=(tp, str(store), str(folder), str(out)), nprocs=tp, join=True)
    rows = [tuple(int(v) for v in Path(f"{out}.{r}").read_text().split()) for r in range(tp)]
    return (max(r[1] - r[0] for r in rows), max(r[2] for r in rows), max(r[3] for r in rows),
            max(r[4] for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a ~20M-parameter model (seconds)")
    ap.add_argument("--tp", type=int, nargs="+", default=[1, 2], help="tensor-parallel sizes (default 1 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        m = zoo.build("llama-2-7b", SMALL if args.small else LARGE)
        total = sum(p.numel() for p in m.parameters())
        plans = {tp: plan_sharding(m.compiled.ir, tp) for tp in args.tp}
        for layout in ("hf", "canonical"):
            m.save(work / layout, layout=None if layout == "hf" else "canonical")
        del m
        print(f"llama, {total / 1e6:,.0f}M parameters, float32 ({total * 4 / 2**20:,.0f} MiB); "
              f"{os.cpu_count()} CPUs; torch {torch.__version__}")
        print(f"{'layout':<10} {'tp':>3} {'plan MiB/rank':>14} {'held MiB':>9} {'load peak +MiB':>15} "
              f"{'ratio':>6} {'anon MiB':>9} {'file MiB':>9}")
        for layout in ("hf", "canonical"):
            for tp in args.tp:
                grew, anon, file, held = measure(work / layout, tp, work)
                plan = plans[tp].tp_rank_params * 4
                print(f"{layout:<10} {tp:>3} {plan / 2**20:>14,.0f} {held / 2**20:>9,.0f} {grew / 2**20:>15,.0f} "
                      f"{grew / plan:>6.2f} {anon / 2**20:>9,.0f} {file / 2**20:>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
