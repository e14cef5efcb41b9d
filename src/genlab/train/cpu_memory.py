"""Keep freed host memory in the process, so CPU training stops page-faulting its activations in every step.

glibc's ``malloc`` serves a request above its mmap threshold with a fresh ``mmap`` and unmaps it
on ``free``; the threshold adapts upwards, but never past 32 MB (64-bit). A training step
allocates and frees the same large activations every step (a ViT's MLP hidden state at batch
256 is 12,800 x 768 floats, 39 MB), so each step maps them anew and the kernel zero-fills every
4 KB page on first touch. With mmap turned off and the heap trimmed only beyond 2 GB of free
space, the main thread's freed blocks are reused and those faults vanish
(``benchmarks/results/cpu_memory.md``: the ViT trains faster, the smaller MAE and demo UNet gain
little). The cost: the process keeps its largest step's memory until it exits, as a GPU caching
allocator does. jemalloc or tcmalloc loaded with ``LD_PRELOAD`` do the same job and are unaffected.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # the largest positive int (-1 would never trim): free heap beyond 2 GB still goes back


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (process-wide, idempotent); False where libc is not glibc
    or mallopt refuses."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the libc this process already runs on
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
