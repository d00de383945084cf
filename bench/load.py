"""Load-time memory and speed of `zoo.load`, against plain safetensors and transformers.

    python bench/load.py            # a ~1.1B-parameter Llama (TinyLlama's shape), float32, ~4.4 GB
    python bench/load.py --small    # a ~10M-parameter model: seconds (what the test runs)

The script writes the checkpoint itself with `zoo`'s save (sharded safetensors under
transformers' names + config.json, so the very same files serve all three loaders), then
measures each loader in a fresh subprocess:

- `safetensors`: `safetensors.torch.load_file` of every shard (the floor: no model, no checks);
- `zoo`: `zoo.load(folder)` (spec, meta build, key/shape check, streaming assign);
- `transformers`: `AutoModelForCausalLM.from_pretrained(folder, dtype="auto")`.

safetensors and zoo both map the file lazily, so the call alone returns before most bytes are
read; every loader is therefore timed until each weight has been touched (one read per 4 KiB
page of every tensor), which is when a model is really in memory. Peak RSS is the child's
`ru_maxrss` (interpreter and libraries included). Each loader is measured with a warm page
cache (files read once before: loader overhead only) and a cold one (the files' pages evicted
with posix_fadvise: disk included); each runs `--repeats` times, the fastest reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LARGE = ["arch.dim=2048", "arch.n_layers=22", "arch.attention.n_heads=32", "arch.attention.n_kv_heads=4",
         "arch.ffn.hidden_dim=5632", "arch.vocab_size=32000", "arch.max_seq_len=2048"]
SMALL = ["arch.dim=256", "arch.n_layers=4", "arch.attention.n_heads=8", "arch.attention.n_kv_heads=2",
         "arch.ffn.hidden_dim=688", "arch.vocab_size=4096", "arch.max_seq_len=512"]


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _touch(tensors: list) -> float:
    """Read one element per 4 KiB page of every tensor: forces every byte into memory."""
    total = 0.0
    for t in tensors:
        flat = t.detach().reshape(-1)
        step = max(1, 4096 // t.element_size())
        total += float(flat[::step].float().sum())
    return total


def measure(kind: str, folder: Path) -> dict:
    """Run in a fresh process: import, load, touch; report times and memory."""
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if kind == "zoo":
        import zoo
    elif kind == "transformers":
        import transformers
        transformers.logging.set_verbosity_error()
    else:
        from safetensors.torch import load_file
    base = _rss_now()
    t0 = time.perf_counter()
    if kind == "zoo":
        tensors = list(zoo.load(folder).parameters())
    elif kind == "transformers":
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
        tensors = list(model.parameters())
    else:
        state: dict = {}
        for f in sorted(folder.glob("*.safetensors")):
            state.update(load_file(f))
        tensors = list(state.values())
    t1 = time.perf_counter()
    check = _touch(tensors)
    t2 = time.perf_counter()
    return {"kind": kind, "load_s": t1 - t0, "total_s": t2 - t0, "peak_rss": _rss_peak(), "base_rss": base,
            "params": sum(t.numel() for t in tensors), "check": check}


def write_checkpoint(folder: Path, overrides: list[str], dtype: str) -> None:
    import torch

    import zoo

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t = time.perf_counter()
    m = zoo.build("llama-2-7b", overrides, init="meta")
    m.to_empty(device="cpu")
    with torch.no_grad():  # cheap random weights: uniform is much faster than normal on 2 cores
        for p in m.parameters():
            p.uniform_(-0.02, 0.02) if p.dim() > 1 else p.fill_(1.0)
    if dtype != "float32":
        m.to(getattr(torch, dtype))
    m.save(folder, max_shard_size="2GB", progress=False)
    print(f"wrote {folder} ({sum(p.numel() for p in m.parameters()) / 1e9:.2f}B params, {dtype}) "
          f"in {time.perf_counter() - t:.1f}s", flush=True)


def _child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]) if args[0] == "--measure" else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="a ~10M-parameter model (seconds)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--dir", type=Path, default=None, help="checkpoint folder (default: a temporary one)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per loader (default 2, --small 1)")
    ap.add_argument("--loaders", default="safetensors,zoo,transformers")
    ap.add_argument("--cache", default=None, help="page cache states to measure: warm,cold (default; --small: warm)")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure:
        print(json.dumps(measure(a.measure, a.dir)))
        return 0
    if a.write:
        write_checkpoint(a.dir, json.loads(a.write), a.dtype)
        return 0
    import shutil
    import tempfile

    t_start = time.perf_counter()
    tmp = None
    folder = a.dir
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="zoo-bench-")
        folder = Path(tmp) / "ckpt"
    try:
        if not (folder / "zoo.yaml").is_file():
            _child(["--write", json.dumps(SMALL if a.small else LARGE), "--dir", str(folder), "--dtype", a.dtype])
        size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        repeats = a.repeats or (1 if a.small else 2)
        ok = True
        for cache in (a.cache or ("warm" if a.small else "warm,cold")).split(","):
            results = {}
            for kind in a.loaders.split(","):
                runs = []
                for _ in range(repeats):
                    page_cache(folder, warm=cache == "warm")
                    runs.append(_child(["--measure", kind, "--dir", str(folder)]))
                results[kind] = min(runs, key=lambda r: r["total_s"])
            report(results, size, cache)
            if not a.small:
                ok &= check(results, size)
        print(f"(bench took {time.perf_counter() - t_start:.0f}s)")
        if a.small:
            print("(--small: fixed costs dominate a 20 MB checkpoint, so the limits are not checked)")
        return 0 if ok else 1
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def page_cache(folder: Path, warm: bool) -> None:
    """Warm: read every shard once (time the loaders, not the disk). Cold: evict the shards'
    pages (posix_fadvise DONTNEED; no root needed) so every loader reads from disk."""
    for p in folder.glob("*.safetensors"):
        with open(p, "rb") as fh:
            if warm:
                while fh.read(64 << 20):
                    pass
            else:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def report(results: dict, size: int, cache: str) -> None:
    gb = 1e9
    floor = results.get("safetensors", {}).get("total_s")
    params = next(iter(results.values()))["params"]
    print(f"\ncheckpoint: {params / 1e9:.3f}B parameters, {size / gb:.2f} GB of safetensors, {cache} page cache")
    head = f"{'loader':<13} {'call s':>7} {'to memory s':>12} {'x safetensors':>14} {'peak RSS GB':>12} " \
           f"{'x ckpt':>7} {'RSS-imports GB':>15}"
    print(head)
    print("-" * len(head))
    for kind, r in results.items():
        ratio = f"{r['total_s'] / floor:.2f}" if floor else "-"
        print(f"{kind:<13} {r['load_s']:>7.2f} {r['total_s']:>12.2f} {ratio:>14} {r['peak_rss'] / gb:>12.2f} "
              f"{r['peak_rss'] / size:>7.2f} {(r['peak_rss'] - r['base_rss']) / gb:>15.2f}")


def check(results: dict, size: int) -> bool:
    z, s = results.get("zoo"), results.get("safetensors")
    ok = True
    if z:
        mem_ok = z["peak_rss"] <= 1.2 * size
        print(f"zoo peak RSS {z['peak_rss'] / size:.2f} x checkpoint (limit 1.2): {'ok' if mem_ok else 'OVER'}")
        ok &= mem_ok
    if z and s:
        time_ok = z["total_s"] <= 1.5 * s["total_s"]
        print(f"zoo time {z['total_s'] / s['total_s']:.2f} x safetensors (limit 1.5): {'ok' if time_ok else 'OVER'}")
        ok &= time_ok
    return ok


if __name__ == "__main__":
    sys.exit(main())
