"""Weight memory on CPU: big matrices on transparent huge pages.

A decode step reads every weight once, and at batch 1 that read is the whole cost. With 4 KiB
pages a 440 MB model spans ~110k pages, and the page walks of the TLB misses cut the read
bandwidth the GEMV kernels reach: on the 2-core machine the docs measure, 85 matrices read
17-19 GB/s on 4 KiB pages and 21-23 GB/s on 2 MiB pages. `huge_page_empty` allocates a tensor
whose storage starts on a 2 MiB boundary and asks the kernel for huge pages there
(madvise(MADV_HUGEPAGE), for systems whose THP mode is "madvise"). The slack before the boundary
is address space only: it is never touched, so it costs no memory.

Used where zoo allocates weights itself (random init, and loads that cast or move anyway).
Zero-copy loads keep their file-backed pages (docs/backends.md). ZOO_HUGE_PAGES=0 turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

import torch

HUGE_PAGE = 2 << 20
MIN_BYTES = 1 << 20  # smaller tensors keep ordinary allocations
MADV_HUGEPAGE = 14


@functools.lru_cache(maxsize=1)
def _madvise():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux") or os.environ.get("ZOO_HUGE_PAGES", "1") == "0":
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as fh:
            mode = fh.read()
    except OSError:
        return None
    if "[never]" in mode:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def huge_pages_available() -> bool:
    return _madvise() is not None


def huge_page_empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """torch.empty(shape, dtype) on the CPU, 2 MiB-aligned and advised for huge pages when the
    tensor is big enough and the system allows; a plain torch.empty otherwise."""
    madvise = _madvise()
    numel = 1
    for s in shape:
        numel *= int(s)
    size = torch.empty((), dtype=dtype).element_size()
    nbytes = numel * size
    if madvise is None or nbytes < MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    pad = HUGE_PAGE // size
    buf = torch.empty(numel + pad, dtype=dtype)
    addr = buf.data_ptr()
    aligned = -(-addr // HUGE_PAGE) * HUGE_PAGE
    end = addr + (numel + pad) * size
    length = min(-(-nbytes // HUGE_PAGE) * HUGE_PAGE, (end - aligned) // HUGE_PAGE * HUGE_PAGE)
    if length > 0:
        madvise(aligned, length, MADV_HUGEPAGE)  # advice only: a refusal leaves ordinary pages
    off = (aligned - addr) // size
    return buf[off:off + numel].view(tuple(shape))
