"""The machine a benchmark ran on, as one results-file line (so ratios are read with their context)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from genlab.train.cpu_memory import retain_freed_memory
from genlab.train.precision import native_bf16


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


class Machine:
    """Start it before the work; ``line()`` after: CPU, threads, torch, load average before / after, wall time.

    ``retain_memory``: keep freed memory for reuse as ``genlab train`` does on the CPU, so that steps timed in
    this process measure the model, not page faults on activations re-mapped each step (``cpu_memory.py``).
    """

    def __init__(self, retain_memory: bool = False) -> None:
        self.retained = retain_memory and retain_freed_memory()
        self.load_before, self.start = os.getloadavg()[0], time.perf_counter()

    def line(self) -> str:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        return (f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
                f"{device}; torch {torch.__version__}; 1-min load average before {self.load_before:.1f}, after "
                f"{os.getloadavg()[0]:.1f}; whole run {time.perf_counter() - self.start:.0f} s"
                + ("; freed memory kept for reuse, as genlab train does" if self.retained else ""))


def bf16_precisions() -> tuple[tuple[bool, ...], str]:
    """The bf16 settings worth timing here — (False, True) on a CPU with native bf16, else (False,) — and a
    results-file line saying which (an emulated bf16 step is many times slower than fp32, not a speed)."""
    if native_bf16(torch.device("cpu")):
        return (False, True), "- bf16 rows: this CPU computes bf16 natively (oneDNN's bf16 path)."
    return (False,), ("- bf16 rows left out: this CPU has no native bf16 (no AVX-512 / AMX), so bf16 autocast is "
                      "emulated there and its timings would measure the emulation.")
