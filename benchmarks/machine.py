"""The machine a benchmark ran on, as one results-file line (so ratios are read with their context)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


class Machine:
    """Start it before the work; ``line()`` after: CPU, threads, torch, load average before / after, wall time."""

    def __init__(self) -> None:
        self.load_before, self.start = os.getloadavg()[0], time.perf_counter()

    def line(self) -> str:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        return (f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
                f"{device}; torch {torch.__version__}; 1-min load average before {self.load_before:.1f}, after "
                f"{os.getloadavg()[0]:.1f}; whole run {time.perf_counter() - self.start:.0f} s")
