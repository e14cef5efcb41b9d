"""retain_freed_memory: once a loop's 64 MB tensors have been allocated a few times, their pages are
reused, not faulted in again each time (glibc's default)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB tensor in a loop, as a training step does its activations; prints
# the page faults of rounds 4-6 (the first rounds may grow the heap: small allocations can land
# in a freed block and split it). Transparent huge pages are turned off for the process
# (PR_SET_THP_DISABLE), so that a fault is one 4 KB page wherever THP is "always".
SCRIPT = """
import ctypes, resource, sys, torch
from genlab.train.cpu_memory import retain_freed_memory
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    torch.empty(16 * 2**20).fill_(1.0)
before = faults()
for _ in range(3):
    torch.empty(16 * 2**20).fill_(1.0)
print(faults() - before)
"""
PAGES = 64 * 2**20 // 4096  # 16,384 pages of 4 KB


def faults(mode: str) -> int:
    """Page faults in a fresh process on glibc's own malloc (no preloaded allocator or malloc tunables)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    return int(subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                              check=True).stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_tensor_memory_is_reused_without_page_faults():
    assert faults("default") >= 3 * PAGES // 2  # glibc maps a block this large anew each time
    assert faults("retain") < PAGES // 20


@pytest.mark.skipif(platform.libc_ver()[0] == "glibc", reason="for other C libraries")
def test_other_c_libraries_are_left_alone():
    from genlab.train.cpu_memory import retain_freed_memory

    assert retain_freed_memory() is False
