"""Native CPU kernels, compiled on first use with the machine's C compiler and loaded by ctypes.

Five sources: `small_gemm.c`, the linear layer of decode steps (1..32 rows; float32 or bf16
weights, float32 sums), which runs at close to memory bandwidth where MKL's GEMV does not
(docs/backends.md); `quant_gemm.c`, the same for int8 / int4 weights (and bf16 on AVX-512),
turned into float32 in registers, with AVX2 and AVX-512 code paths picked at run time
(`quant_ops.py` has its custom ops, `weights.h` / `weights.py` the weight descriptor every
decode kernel reads); `block_step.c`, every LLaMA-style decoder block of such a step in one
call (`block_step.py`), whatever those weights are stored as; `gemm.c`, a packed GEMM for
prefill-sized linears on AVX2 CPUs (faster than MKL's float32 GEMM on this class of machine,
and it reads bf16 weights without a widened copy), with a causal attention for prefill on top
of it; and `eltwise.c`, one-pass RMSNorm, SiLU*up and RoPE. `cpu_linear` is what the sdpa backend binds. Each kernel is also a
`torch.library` custom op (`torch.ops.zoo.*`, ops.py), which is what `torch.compile` and
`torch.export` see; plain eager calls skip the dispatcher. The library is
built once per source/flags/CPU into ~/.cache/zoo/kernels (or $ZOO_CACHE_DIR/kernels), written
atomically, so concurrent processes never load a half-written file. Where it cannot be built
(no compiler, no AVX2/FMA, a compile error) or ZOO_KERNELS=0, `small_linear` returns None and the
caller uses torch; `small_gemm_status()` says which and why, for `--explain`. The decode kernels
take the widest instruction set the CPU has (AVX2, AVX-512, AVX-512 with bf16 dot products);
ZOO_KERNELS_ISA=avx2|avx512|avx512-bf16 caps it (to compare, or to rule a path out).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

SOURCES = [Path(__file__).with_name(n) for n in ("small_gemm.c", "block_step.c", "gemm.c", "eltwise.c",
                                                  "quant_gemm.c")]
HEADERS = [Path(__file__).with_name(n) for n in ("simd.h", "weights.h")]  # part of the build key
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC"]
MAX_ROWS = 32  # beyond this MKL's GEMM does well; below it, its small-M paths do not

# ZOO_KERNELS_ISA caps the decode kernels' instruction set (quant_gemm.c picks the best the CPU has)
ISA_LEVELS = {"avx2": 1, "avx512": 2, "avx512-bf16": 3}
ISA_NAMES = {v: k for k, v in ISA_LEVELS.items()}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_status: tuple[bool, str] | None = None


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _cpu_ok() -> tuple[bool, str]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False, f"needs an x86-64 CPU, have {platform.machine()}"
    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in ("AVX2", "AVX512"):
        return False, f"needs AVX2+FMA, CPU capability is {cap}"
    return True, cap


def precheck() -> tuple[bool, str]:
    """Whether the kernel can be used here, without building it."""
    if os.environ.get("ZOO_KERNELS", "1") == "0":
        return False, "disabled by ZOO_KERNELS=0"
    ok, why = _cpu_ok()
    if not ok:
        return False, why
    if _compiler() is None:
        return False, "no C compiler (cc/gcc) to build it"
    return True, why


def _cache_dir() -> Path:
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")
    return Path(root) / "kernels"


def _build() -> ctypes.CDLL:
    cc = _compiler()
    assert cc is not None
    src = b"".join(p.read_bytes() for p in [*SOURCES, *HEADERS])
    key = hashlib.sha256(src + " ".join([cc, *FLAGS, platform.machine()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"zoo_kernels-{key}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run([cc, *FLAGS, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-400:]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    # torch has loaded its libgomp.so.1 already: the library's NEEDED entry resolves to it, so
    # its OpenMP threads are torch's own pool (torch.set_num_threads applies)
    lib = ctypes.CDLL(str(target))
    lib.zoo_small_gemm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.zoo_small_gemm.restype = ctypes.c_int
    lib.zoo_small_bgemm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.zoo_small_bgemm.restype = ctypes.c_int
    lib.zoo_small_gemm_bf16.argtypes = lib.zoo_small_gemm.argtypes
    lib.zoo_small_gemm_bf16.restype = ctypes.c_int
    lib.zoo_gemm_nt.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.zoo_gemm_nt.restype = ctypes.c_int
    i64p = ctypes.POINTER(ctypes.c_int64)
    lib.zoo_causal_attention.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 6 + [i64p] * 4 + [ctypes.c_float]
    lib.zoo_causal_attention.restype = ctypes.c_int
    lib.zoo_rmsnorm.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                ctypes.c_int64, ctypes.c_float]
    lib.zoo_rmsnorm.restype = None
    lib.zoo_silu_mul.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.zoo_silu_mul.restype = None
    lib.zoo_rope.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4 + [i64p, ctypes.c_int64]
    lib.zoo_rope.restype = None
    from . import step_call, weights

    step_call.declare(lib)
    weights.declare(lib)
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, built on first use; None where it cannot be."""
    small_gemm_status()
    return _lib


def small_gemm_status() -> tuple[bool, str]:
    """(usable, why): builds the library on the first call."""
    global _lib, _status
    if _status is None:
        with _lock:
            if _status is None:
                ok, why = precheck()
                if ok:
                    try:
                        _lib = _build()
                        level = _lib.zoo_set_isa(ISA_LEVELS.get(os.environ.get("ZOO_KERNELS_ISA", ""), 0))
                        why = f"built for {why}; decode kernels: {ISA_NAMES[level]}"
                    except (OSError, RuntimeError) as e:
                        ok, why = False, f"could not build: {e}"
                _status = (ok, why)
    return _status


def ready() -> bool:
    """Whether the library is loaded here, building it on the first call outside a trace; inside
    one (torch.compile) a library not built yet is not built (Dynamo cannot trace the build), and
    the kernels decline, so the graph holds torch's ops. Binding the sdpa backend builds it."""
    if _lib is not None:
        return True
    if _status is None and torch.compiler.is_compiling():
        return False
    return small_gemm_status()[0]


_AVX2 = torch.backends.cpu.get_cpu_capability() == "AVX2"  # read once: torch.compile cannot trace the query


def prefers_packed_gemm() -> bool:
    """The packed GEMM and the attention on it are AVX2 code: used where that is the widest the CPU
    has (on AVX-512, MKL's and torch's own kernels are wider)."""
    return _AVX2


def _applies(x: torch.Tensor, weight: torch.Tensor, bf16: bool = False) -> bool:
    """CPU tensors, a contiguous weight, no autograd wanted, and a kernel on this machine; float32
    weights with float32 inputs, or (where `bf16` is allowed) bfloat16 weights with float32 or
    bfloat16 inputs."""
    if x.device.type != "cpu" or weight.device.type != "cpu" or not weight.is_contiguous():
        return False
    if weight.dtype is torch.float32:
        if x.dtype is not torch.float32:
            return False
    elif not (bf16 and weight.dtype is torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16)):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return ready()


def small_bmm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """x (B, M, K) @ weight (B, N, K)^T → (B, M, N) with the native kernel (the grouped heads of a
    multi-token model), or None when it does not apply (as small_linear)."""
    if x.dim() != 3 or weight.dim() != 3:
        return None
    b, m, k = x.shape
    if m == 0 or m > MAX_ROWS or weight.shape[0] != b or weight.shape[2] != k or not _applies(x, weight):
        return None
    return ops.call(ops.small_bgemm, ops.small_bgemm_raw, x.contiguous(), weight)


def small_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """x @ weight.T (+ bias) with the native kernel, or None when it does not apply: not CPU
    tensors, more than MAX_ROWS rows, autograd wanted, or no kernel on this machine. float32
    weights take float32 inputs; bfloat16 weights are read as they are (half the bytes) and
    summed in float32, the result in x's dtype."""
    k = x.shape[-1]
    if k == 0 or x.numel() > MAX_ROWS * k or x.numel() == 0 or weight.shape[1] != k or not _applies(x, weight, True):
        return None
    m = x.numel() // k
    n = weight.shape[0]
    x2 = x.reshape(m, k).to(torch.float32).contiguous()
    y = ops.call(ops.small_gemm, ops.small_gemm_raw, x2, weight).view(*x.shape[:-1], n)
    if bias is not None:
        y += bias
    return y.to(x.dtype)


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """x @ weight.T (+ bias) with the native packed GEMM (`gemm.c`), for prefill-sized inputs on
    AVX2 CPUs: float32 inputs with float32 weights, or bfloat16 weights widened while packing (the
    result then rounded to x's dtype). None where it does not apply (autograd, other dtypes or
    devices, a CPU with AVX-512, where MKL's kernels are wider than this one)."""
    if x.dim() == 0 or not prefers_packed_gemm() or not _applies(x, weight, True):
        return None
    if weight.dtype is torch.float32 and x.dtype is not torch.float32:
        return None
    k = x.shape[-1]
    if k == 0 or weight.shape[1] != k or x.numel() == 0:
        return None
    m, n = x.numel() // k, weight.shape[0]
    x2 = x.reshape(m, k)
    if x2.dtype is not torch.float32 or x2.stride(-1) != 1:
        x2 = x2.to(torch.float32).contiguous()
    y = ops.call(ops.gemm_nt, ops.gemm_nt_raw, x2, weight).view(*x.shape[:-1], n)
    if bias is not None:
        y += bias
    return y.to(x.dtype)


MIN_ATTENTION_ROWS = 64  # below this torch's sdpa is as fast (and decode steps have their own path)


def _plain_f32(*xs: torch.Tensor) -> bool:
    """float32 CPU tensors that autograd does not need, and the library here."""
    if any(x.dtype is not torch.float32 or x.device.type != "cpu" for x in xs):
        return False
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        return False
    return ready()


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor | None:
    """Causal softmax attention for prefill with the packed GEMM (`zoo_causal_attention`): q
    (B, H, T, D) are the last T of the S positions of k and v (B, Hkv, S, D), GQA by H / Hkv.
    Returns (B, H, T, D) as a transposed view of a (B, T, H, D) tensor, so the heads' merge that
    follows is free; None where it does not apply (not float32 CPU tensors, autograd, fewer than
    MIN_ATTENTION_ROWS queries, a CPU other than AVX2). bfloat16 q, k, v are widened to float32
    for it and the result rounded back (torch's bf16 attention on an AVX2 CPU took 3x as long, and
    is less exact)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4 or q.shape[2] < MIN_ATTENTION_ROWS:
        return None
    b, h, t, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    if v.shape != k.shape or k.shape[0] != b or k.shape[3] != d or s < t or h % hkv:
        return None
    if not prefers_packed_gemm():
        return None
    if any(x.stride(-1) != 1 for x in (q, k, v)):
        return None
    half = all(x.dtype is torch.bfloat16 for x in (q, k, v))
    if half:
        q, k, v = q.float(), k.float(), v.float()  # strides kept: a (B, T, H, D) view stays one
    if not _plain_f32(q, k, v):
        return None
    out = ops.call(ops.causal_attention, ops.causal_attention_raw, q, k, v, float(scale))
    return out.to(torch.bfloat16) if half else out


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    """LLaMA's RMSNorm in one pass (float32): x * rsqrt(mean(x^2) + eps) * weight; None where it
    does not apply (other dtypes, autograd, a non-contiguous weight or rows)."""
    if x.numel() == 0 or not _plain_f32(x, weight) or not weight.is_contiguous() or weight.shape != x.shape[-1:]:
        return None
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    if x2.stride(-1) != 1:
        return None
    return ops.call(ops.rmsnorm, ops.rmsnorm_raw, x, weight, float(eps))


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up in one pass, written into `gate` (a fresh projection output) and returned."""
    if gate.shape != up.shape or not gate.is_contiguous() or not up.is_contiguous() or not _plain_f32(gate, up):
        return None
    ops.call(ops.silu_mul, ops.silu_mul_raw, gate, up)
    return gate


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor | None:
    """Half-split RoPE applied in place to x (B, H, T, D) (a fresh projection's view) with
    tables (B | 1, 1, T, D); returns x, or None where it does not apply."""
    if x.dim() != 4 or cos.dim() != 4 or x.stride(-1) != 1 or x.shape[-1] % 2 or not _plain_f32(x, cos, sin):
        return None
    b, h, t, d = x.shape
    if cos.shape != sin.shape or cos.shape[1:] != (1, t, d) or cos.shape[0] not in (1, b) or not cos.is_contiguous() \
            or not sin.is_contiguous():
        return None
    ops.call(ops.rope, ops.rope_raw, x, cos, sin)
    return x


_ONEDNN = not _AVX2 and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """x @ weight.T (+ bias) in float32 by oneDNN (torch's `mkldnn._linear_pointwise`), for
    prefill-sized inputs on AVX-512 CPUs, where it is 2.4x torch's default (MKL) float32 GEMM
    (a 512 x 768 x 2048 product: 3.7 ms against 9.0 ms, AMD EPYC Zen 5, 2 threads; the same
    float32 rounding, 8e-7 relative). None where it does not apply (other dtypes, autograd,
    AVX2 CPUs, no oneDNN in this torch)."""
    if not _ONEDNN or x.dim() == 0 or x.shape[-1] == 0 or x.numel() == 0 or weight.dim() != 2:
        return None
    if x.dtype is not torch.float32 or weight.dtype is not torch.float32 or x.device.type != "cpu" \
            or weight.device.type != "cpu" or weight.shape[1] != x.shape[-1]:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return None
    if torch.compiler.is_compiling() or bias is not None and (bias.dtype is not torch.float32 or bias.device.type != "cpu"):
        return None
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """The sdpa backend's CPU linear: `small_linear` for decode-sized inputs (1-32 rows); for
    more rows (prefill) the packed GEMM on AVX2 CPUs (faster than MKL's float32 GEMM there, and
    2.3-6x faster than torch's bf16 GEMM on a CPU without bf16 arithmetic) and oneDNN's float32
    GEMM on AVX-512 ones; None elsewhere: torch's linear."""
    y = small_linear(x, weight, bias)
    if y is not None:
        return y
    y = packed_linear(x, weight, bias)
    return y if y is not None else onednn_linear(x, weight, bias)


from . import ops
