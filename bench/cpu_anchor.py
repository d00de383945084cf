"""CPU decode and prefill, zoo against llama.cpp and transformers: the same weights, the same run,
every precision (float32; bf16 / f16; int8 / Q8_0; int4 / Q4_0).

    .venv/bin/python bench/cpu_anchor.py [--threads 2] [--repeats 3] [--new 128] [--quick] [--json out.json]

A ~134M Llama (dim 768, 12 layers, vocab 32000; random weights, std 0.05 so attention is not
uniform) is built once, saved as a zoo folder, and written as GGUF files by `zoo convert`'s
writer (llama.cpp's Q8_0 / Q4_0 blocks by gguf's reference quantizer). Each (system, weights)
pair runs in its own long-lived worker process, so each has its own peak RSS and nothing of one
warms another's caches; the parent sends the same requests to all of them in turn (interleaved:
every trial visits every worker once) and keeps the best time of each. Before every request it
checks that nothing else is taking CPU (the busy fraction of the other processes over 0.3 s,
read from /proc/stat; with autogroup scheduling a niced process from another terminal still
takes an equal share) and waits, up to --wait seconds, until the machine is quiet.

Measured: decode tok/s at batch 1 and 8 (a 128-token prompt, then --new tokens: the time from the
first new token to the last, so the prompt is excluded), prefill tok/s (a 512-token prompt up to its
first token), the bytes one decode step reads (every weight once, the embedding table but one row
excepted) and the effective GB/s, peak RSS, and the machine's read bandwidth (a 2-thread
torch.sum over 1 GiB). zoo's int8 / int4 here quantize the output projection too, as llama.cpp's
Q8_0 / Q4_0 files do (zoo's default keeps it float). All systems decode greedily; the first
tokens of zoo float32 and llama.cpp F32 are compared.

llama.cpp is driven through llama-cpp-python's low-level API (llama_batch / llama_decode, one
sequence id per row, greedy over the returned logits), which is what its batched examples do.
llama-cpp-python is a bench extra (`pip install -e '.[bench]'`, ~10 minutes to build); without
it the llama.cpp rows are skipped.

An AVX2 machine, emulated on an AVX-512 one: cap every system's instruction set, zoo's kernels
(ZOO_KERNELS_ISA=avx2), torch's (ATEN_CPU_CAPABILITY=avx2), MKL's (MKL_ENABLE_INSTRUCTIONS=AVX2),
oneDNN's (ONEDNN_MAX_CPU_ISA=AVX2), and build llama.cpp without AVX-512 (CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF ..."
pip install --target DIR llama-cpp-python), then pass --llama-cpp DIR.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = ["arch.dim=768", "arch.n_layers=12", "arch.attention.n_heads=12", "arch.vocab_size=32000",
         "arch.ffn.hidden_dim=2048", "arch.max_seq_len=2048"]
QUICK = ["arch.dim=256", "arch.n_layers=4", "arch.attention.n_heads=4", "arch.vocab_size=8000",
         "arch.ffn.hidden_dim=768", "arch.max_seq_len=1024"]
PROMPT, PREFILL, BATCH = 128, 512, 8

# (system, weights, how): zoo's quantization quantizes the output too (skip nothing), as the GGUF files do
VARIANTS: list[tuple[str, str, Any]] = [
    ("zoo", "F32", {"dtype": "float32"}),
    ("transformers", "F32", {"dtype": "float32"}),
    ("llama.cpp", "F32", {"gguf": "f32"}),
    ("zoo", "BF16", {"dtype": "bfloat16"}),
    ("transformers", "BF16", {"dtype": "bfloat16"}),
    ("llama.cpp", "BF16", {"gguf": "bf16"}),
    ("llama.cpp", "F16", {"gguf": "f16"}),
    ("zoo", "int8", {"quantize": {"kind": "int8", "skip": []}}),
    ("llama.cpp", "Q8_0", {"gguf": "q8_0"}),
    ("zoo", "int4 g32", {"quantize": {"kind": "int4", "group_size": 32, "skip": []}}),
    ("llama.cpp", "Q4_0", {"gguf": "q4_0"}),
]
PAIRS = [("F32", "F32"), ("BF16", "BF16"), ("BF16", "F16"), ("int8", "Q8_0"), ("int4 g32", "Q4_0")]


# ---------------------------------------------------------------- the machine
from bench.quant_accuracy import cpu_name  # noqa: E402


def isa() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "?"
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni") if f in flags]
    return " ".join(have) or "no AVX2"


def _busy_jiffies() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _own_jiffies(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def others_busy(pids: list[int], window: float = 0.3) -> float:
    """CPUs' worth of work done by processes other than `pids` over `window` seconds."""
    b0, t0 = _busy_jiffies()
    o0 = _own_jiffies(pids)
    time.sleep(window)
    b1, t1 = _busy_jiffies()
    o1 = _own_jiffies(pids)
    ncpu = os.cpu_count() or 1
    total = max(t1 - t0, 1)
    return max(0.0, ((b1 - b0) - (o1 - o0)) / total * ncpu)


def wait_quiet(pids: list[int], limit: float, max_wait: float) -> float:
    """Wait until other processes take under `limit` CPUs; returns the last reading."""
    deadline = time.monotonic() + max_wait
    busy = others_busy(pids)
    while busy > limit and time.monotonic() < deadline:
        time.sleep(1.0)
        busy = others_busy(pids)
    return busy


def read_bandwidth(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(1 << 28)  # 1 GiB, touched
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


# ---------------------------------------------------------------- workers
class ZooRunner:
    def __init__(self, folder: str, how: dict, threads: int):
        import torch

        import zoo

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = zoo.load(folder, dtype=getattr(torch, how.get("dtype", "float32"))).eval()

    def read_bytes(self) -> int:
        from bench.quant_decode import read_bytes

        return read_bytes(self.model)

    def decode(self, prompts: list[list[int]], new: int) -> tuple[float, list[int]]:
        from zoo.runtime.generation import iter_tokens

        with self.torch.no_grad():
            steps = iter_tokens(self.model, prompts, new)
            toks = [int(next(steps)[0])]
            t = time.perf_counter()
            for s in steps:
                toks.append(int(s[0]))
            return time.perf_counter() - t, toks

    def prefill(self, prompt: list[int]) -> float:
        from zoo.runtime.generation import iter_tokens

        with self.torch.no_grad():
            t = time.perf_counter()
            next(iter_tokens(self.model, [prompt], 1))
            return time.perf_counter() - t


class HFRunner:
    def __init__(self, folder: str, how: dict, threads: int):
        import torch

        import zoo
        from tests.oracles import hf_llama_from

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = hf_llama_from(zoo.load(folder)).to(getattr(torch, how["dtype"])).eval()

    def read_bytes(self) -> int:
        total = 0
        for name, p in self.model.named_parameters():
            if "embed_tokens" not in name:
                total += p.numel() * p.element_size()
        return total

    def decode(self, prompts: list[list[int]], new: int) -> tuple[float, list[int]]:
        from transformers import LogitsProcessor, LogitsProcessorList

        stamps: list[float] = []

        class Stamp(LogitsProcessor):
            def __call__(self, input_ids, scores):  # noqa: ANN001
                stamps.append(time.perf_counter())
                return scores

        ids = self.torch.tensor(prompts)
        with self.torch.no_grad():
            out = self.model.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=new,
                                      min_new_tokens=new, do_sample=False, pad_token_id=0,
                                      logits_processor=LogitsProcessorList([Stamp()]))
        return stamps[-1] - stamps[0], out[0, len(prompts[0]):].tolist()

    def prefill(self, prompt: list[int]) -> float:
        ids = self.torch.tensor([prompt])
        with self.torch.no_grad():
            t = time.perf_counter()
            self.model(ids, use_cache=True).logits[0, -1].argmax()
            return time.perf_counter() - t


class LlamaCppRunner:
    """llama.cpp through llama-cpp-python's low-level API: one context of BATCH sequences."""

    def __init__(self, path: str, how: dict, threads: int):
        import llama_cpp as lc
        import numpy as np

        self.lc, self.np, self.path = lc, np, path
        self._quiet = lc.llama_log_callback(lambda level, text, user: None)  # its load log: kept alive here
        lc.llama_log_set(self._quiet, None)
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(path.encode(), lc.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        cp = lc.llama_context_default_params()
        cp.n_ctx = BATCH * (PREFILL + 8) + 64
        cp.n_batch = cp.n_ubatch = PREFILL
        cp.n_seq_max = BATCH
        cp.n_threads = cp.n_threads_batch = threads
        cp.no_perf = True
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not make a context")
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.batch = lc.llama_batch_init(PREFILL * 2, 0, BATCH)

    def read_bytes(self) -> int:
        import gguf

        r = gguf.GGUFReader(self.path)
        return sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight")

    def _run(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """rows: (token, position, sequence, wants logits)."""
        b = self.batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seq, out) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = out
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _argmax(self, i: int) -> int:
        p = self.lc.llama_get_logits_ith(self.ctx, i)
        return int(self.np.ctypeslib.as_array(p, shape=(self.n_vocab,)).argmax())

    def _clear(self) -> None:
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)

    def _prefill(self, prompts: list[list[int]]) -> list[int]:
        self._clear()
        nxt = []
        for s, p in enumerate(prompts):  # each prompt in one batch (n_batch = PREFILL)
            self._run([(tok, j, s, j == len(p) - 1) for j, tok in enumerate(p)])
            nxt.append(self._argmax(len(p) - 1))
        return nxt

    def decode(self, prompts: list[list[int]], new: int) -> tuple[float, list[int]]:
        nxt = self._prefill(prompts)
        toks = [nxt[0]]
        n = len(prompts[0])
        t = time.perf_counter()
        for step in range(new - 1):
            self._run([(nxt[s], n + step, s, True) for s in range(len(prompts))])
            nxt = [self._argmax(s) for s in range(len(prompts))]
            toks.append(nxt[0])
        return time.perf_counter() - t, toks

    def prefill(self, prompt: list[int]) -> float:
        self._clear()
        t = time.perf_counter()
        self._run([(tok, j, 0, j == len(prompt) - 1) for j, tok in enumerate(prompt)])
        self._argmax(len(prompt) - 1)
        return time.perf_counter() - t


def worker(conn: Any, system: str, target: str, how: dict, threads: int) -> None:
    try:
        cls = {"zoo": ZooRunner, "transformers": HFRunner, "llama.cpp": LlamaCppRunner}[system]
        runner = cls(target, how, threads)
        conn.send(("ready", runner.read_bytes()))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which skips this worker
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        cmd, *args = conn.recv()
        if cmd == "stop":
            return
        try:
            conn.send(("ok", getattr(runner, cmd)(*args)))
        except Exception as e:  # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {e}"))


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------- setup
def make_model(folder: Path, quick: bool) -> dict[str, Path]:
    """The random model as a zoo folder and as GGUF files; returns {gguf dtype: path}."""
    import sentencepiece as spm
    import torch
    from zoo.runtime.tokenizers import SentencePieceTokenizer

    import zoo
    from zoo.formats.gguf_write import write_gguf

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(["def add(a, b):\n    return a + b", "the quick brown fox jumps over the lazy dog",
                                 "import os\nprint(os.getcwd())"] * 40))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), model_type="bpe",
                                   vocab_size=300, byte_fallback=True, minloglevel=2, num_threads=1,
                                   character_coverage=1.0)
    tok = SentencePieceTokenizer.from_file(folder / "tokenizer.model")
    m = zoo.build("llama-2-7b", QUICK if quick else SHAPE, seed=0, tokenizer=tok).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.05)
    m.save(folder / "zoo")
    for _, weights, how in VARIANTS:  # zoo's quantized folders, as `zoo quantize` writes them
        if "quantize" in how:
            zoo.load(folder / "zoo", quantize=how["quantize"]).save(folder / f"zoo-{weights.replace(' ', '-')}")
    out = {}
    for dt in ("f32", "bf16", "f16", "q8_0", "q4_0"):
        out[dt] = write_gguf(m, folder / f"model-{dt}.gguf", dtype=dt)
    return out


# ---------------------------------------------------------------- the run
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new", type=int, default=128, help="new tokens at batch 1 (batch 8: a quarter of it)")
    ap.add_argument("--quick", action="store_true", help="a small model, fewer tokens: a smoke test")
    ap.add_argument("--only", default=None, help="comma-separated systems (zoo,transformers,llama.cpp)")
    ap.add_argument("--busy-limit", type=float, default=0.15, help="CPUs others may take before a trial waits")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a quiet machine per trial")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--llama-cpp", default=None, metavar="DIR",
                    help="import llama_cpp from DIR (a build for another instruction set, pip install --target DIR)")
    args = ap.parse_args()
    if args.llama_cpp:
        sys.path.insert(0, args.llama_cpp)
        os.environ["PYTHONPATH"] = os.pathsep.join([args.llama_cpp, os.environ.get("PYTHONPATH", "")])
    if args.quick:
        args.new = min(args.new, 16)
    systems = set(args.only.split(",")) if args.only else {"zoo", "transformers", "llama.cpp"}
    llama_info = ""
    try:
        import llama_cpp

        llama_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except ImportError:
        if "llama.cpp" in systems:
            print("llama-cpp-python is not installed: the llama.cpp rows are skipped "
                  "(pip install llama-cpp-python; it builds from source in ~10 minutes)", file=sys.stderr)
        systems.discard("llama.cpp")

    import random

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="zoo-cpu-anchor-") as tmp:
        print("building the model and its GGUF files ...", file=sys.stderr)
        ggufs = make_model(Path(tmp), args.quick)
        vocab = 8000 if args.quick else 32000
        rng = random.Random(0)
        prompt = [rng.randrange(3, vocab) for _ in range(PROMPT)]
        batch = [[rng.randrange(3, vocab) for _ in range(PROMPT)] for _ in range(BATCH)]
        long = [rng.randrange(3, vocab) for _ in range(PREFILL)]
        new_b = max(args.new // 4, 4)

        workers: dict[tuple[str, str], Any] = {}
        info: dict[tuple[str, str], dict[str, Any]] = {}
        for system, weights, how in VARIANTS:
            if system not in systems:
                continue
            target = (str(ggufs[how["gguf"]]) if system == "llama.cpp" else
                      str(Path(tmp) / (f"zoo-{weights.replace(' ', '-')}" if "quantize" in how else "zoo")))
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, system, target, how, args.threads), daemon=True)
            proc.start()
            status, value = parent.recv()
            if status != "ready":
                print(f"{system} {weights}: {value} (skipped)", file=sys.stderr)
                proc.join(5)
                continue
            workers[(system, weights)] = (proc, parent)
            info[(system, weights)] = {"bytes": value, "b1": float("inf"), "b8": float("inf"),
                                       "prefill": float("inf"), "busy": 0.0}
            print(f"  {system} {weights}: ready", file=sys.stderr)

        pids = [os.getpid()] + [p.pid for p, _ in workers.values()]

        def ask(key: tuple[str, str], *cmd: Any) -> Any:
            busy = wait_quiet(pids, args.busy_limit, args.wait)
            info[key]["busy"] = max(info[key]["busy"], busy)
            _, conn = workers[key]
            conn.send(cmd)
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"{key}: {value}")
            return value

        tokens: dict[tuple[str, str], list[int]] = {}
        for trial in range(args.repeats + 1):  # the first round warms up
            for key in workers:
                dt, toks = ask(key, "decode", [prompt], args.new)
                tokens[key] = toks
                dt8, _ = ask(key, "decode", batch, new_b)
                pf = ask(key, "prefill", long)
                if trial:
                    rec = info[key]
                    rec["b1"] = min(rec["b1"], dt / (args.new - 1))
                    rec["b8"] = min(rec["b8"], dt8 / (new_b - 1))
                    rec["prefill"] = min(rec["prefill"], pf)
            print(f"  trial {trial} done", file=sys.stderr)
        for key, (proc, conn) in workers.items():
            info[key]["rss"] = peak_rss_mb(proc.pid)
            conn.send(("stop",))
            proc.join(10)

    bw = read_bandwidth(args.threads)
    rows = []
    for (system, weights), rec in info.items():
        tps = 1 / rec["b1"]
        rows.append({"system": system, "weights": weights, "mb_per_token": rec["bytes"] / 1e6, "decode_b1": tps,
                     "decode_b8": BATCH / rec["b8"], "gbps": rec["bytes"] * tps / 1e9, "prefill": PREFILL / rec["prefill"],
                     "peak_rss_mb": rec["rss"], "others_busy": rec["busy"]})
    caps = {k: os.environ[k] for k in ("ZOO_KERNELS_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                                       "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    if caps or llama_info:
        print(f"\ninstruction sets: {caps or 'all the CPU has'}; llama.cpp: {llama_info or '-'}")
    print(f"\nCPU: {cpu_name()} ({isa()}), {args.threads} threads; read bandwidth (torch.sum over 1 GiB) "
          f"{bw:.1f} GB/s; {'quick model' if args.quick else '134M Llama'}, prompt {PROMPT}, {args.new} new tokens "
          f"(b=8: {new_b}), prefill {PREFILL}; best of {args.repeats}, interleaved\n")
    print("| system | weights | MB read / token | decode b=1 tok/s | effective GB/s | decode b=8 tok/s | "
          "prefill 512 tok/s | peak RSS MB | others' CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['weights']} | {r['mb_per_token']:.0f} | {r['decode_b1']:.1f} | {r['gbps']:.1f} | "
              f"{r['decode_b8']:.1f} | {r['prefill']:.0f} | {r['peak_rss_mb']:.0f} | {r['others_busy']:.2f} |")
    by = {(r["system"], r["weights"]): r for r in rows}
    lines = []
    for ours, theirs in PAIRS:
        a, b = by.get(("zoo", ours)), by.get(("llama.cpp", theirs))
        if a and b:
            lines.append(f"| {ours} / {theirs} | {a['decode_b1'] / b['decode_b1']:.2f} | "
                         f"{a['decode_b8'] / b['decode_b8']:.2f} | {a['prefill'] / b['prefill']:.2f} |")
    if lines:
        print("\nzoo / llama.cpp (above 1: zoo faster)\n\n| weights | decode b=1 | decode b=8 | prefill 512 |\n|---|---|---|---|")
        print("\n".join(lines))
    za, lb = tokens.get(("zoo", "F32")), tokens.get(("llama.cpp", "F32"))
    if za and lb:
        n = min(32, len(za), len(lb))
        same = next((i for i in range(n) if za[i] != lb[i]), n)
        print(f"\ngreedy tokens, zoo F32 vs llama.cpp F32: the first {same} of {n} agree")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "isa": isa(), "threads": args.threads,
                                               "read_gbps": bw, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
