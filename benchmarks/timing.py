"""Side-by-side timing for benchmarks: functions run alternately, so both see the same machine state."""

from __future__ import annotations

import statistics
import time
from typing import Callable

WARMUP = 3


def median_times(fns: list[Callable[[], object]], repeats: int, warmup: int = WARMUP) -> list[float]:
    """Median seconds per call of each function over ``repeats`` alternating rounds, after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
