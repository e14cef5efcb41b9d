"""Keep freed host memory in the process, so CPU training stops page-faulting its activations in every step.

glibc's ``malloc`` serves a request above its mmap threshold with a fresh ``mmap`` and returns it
to the kernel on ``free``; the threshold adapts upwards, but never past 32 MB. A training step
allocates and frees the same large activations every step (a ViT's MLP hidden state at batch
256 is 12,800 x 768 floats, 39 MB), so each step maps them anew and the kernel zero-fills every
4 KB page on first touch: over 100,000 page faults per step of ``genlab train vit`` at batch 256
on a 2-core CPU. With mmap turned off and the heap trimmed only beyond 2 GB of free space, freed
blocks are reused and those faults vanish (``benchmarks/cpu_memory.py`` times both side by side:
the ViT trains faster, the smaller MAE and demo UNet about the same). The cost: the
process keeps the memory of its largest step mapped until it exits, as a GPU caching allocator
does. jemalloc or tcmalloc loaded with ``LD_PRELOAD`` do the same job and are unaffected.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): free heap beyond 2 GB still goes back


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (process-wide, idempotent); False where libc is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the libc this process already runs on
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
