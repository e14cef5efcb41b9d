"""Where a step's work goes, split into matrix multiplies and everything else: FLOPs counted by
``torch.utils.flop_counter`` and self CPU time from ``torch.profiler``."""

from __future__ import annotations

import statistics
from typing import Callable

from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

MATMULS = ("mm", "addmm", "bmm", "baddbmm")  # aten operators; fused attention kernels are not among them


def counted_flops(fn: Callable[[], object]) -> tuple[int, int]:
    """FLOPs of one call of ``fn``: all, and those of the matrix-multiply operators."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    ops = counter.get_flop_counts()["Global"]
    return counter.get_total_flops(), sum(v for op, v in ops.items() if op.__name__ in MATMULS)


def cpu_time_split(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """Self CPU seconds of a call of ``fn`` in matrix-multiply operators and in all others (medians
    over ``repeats`` profiled calls)."""
    matmul, other = [], []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        events = prof.key_averages()
        mm = sum(e.self_cpu_time_total for e in events if e.key.removeprefix("aten::") in MATMULS) / 1e6
        matmul.append(mm)
        other.append(sum(e.self_cpu_time_total for e in events) / 1e6 - mm)
    return statistics.median(matmul), statistics.median(other)
