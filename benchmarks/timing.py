"""Side-by-side timing for benchmarks: functions run alternately, so both see the same machine state."""

from __future__ import annotations

import statistics
import time
from typing import Callable

WARMUP = 3


def round_times(fns: list[Callable[[], object]], repeats: int, warmup: int = WARMUP) -> list[list[float]]:
    """Seconds per call of each function in each of ``repeats`` alternating rounds, after ``warmup`` rounds.

    Round i of every function ran back to back, so ratios within a round pair calls that saw the same
    machine state (a VM's memory bandwidth and clock drift between rounds).
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return times


def median_times(fns: list[Callable[[], object]], repeats: int, warmup: int = WARMUP) -> list[float]:
    """Median seconds per call of each function over ``repeats`` alternating rounds, after ``warmup`` rounds."""
    return [statistics.median(t) for t in round_times(fns, repeats, warmup)]


def ratio_quartiles(num: list[float], den: list[float]) -> tuple[float, float]:
    """Lower and upper quartiles of the per-round ratios num[i] / den[i]: the spread of a side-by-side ratio."""
    q1, _, q3 = statistics.quantiles([a / b for a, b in zip(num, den)], n=4)
    return q1, q3
