"""Where a step's work goes, split into matrix multiplies and everything else: FLOPs counted by
``torch.utils.flop_counter`` and CPU time from ``torch.profiler``."""

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


def _is_matmul(event) -> bool:
    return event.name.removeprefix("aten::") in MATMULS


def _outermost_matmul(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _is_matmul(parent):
            return False
        parent = parent.cpu_parent
    return _is_matmul(event)


def cpu_time_split(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """CPU seconds of a call of ``fn`` in matrix-multiply operators and in all others (medians over ``repeats``
    profiled calls). A matmul's time includes the operators it calls itself (addmm copying the bias into its
    output, mm making an operand contiguous): they are part of that operator's cost, the rest is self time."""
    matmul, other = [], []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        events = prof.events()
        mm = sum(e.cpu_time_total for e in events if _outermost_matmul(e)) / 1e6
        matmul.append(mm)
        other.append(sum(e.self_cpu_time_total for e in events) / 1e6 - mm)
    return statistics.median(matmul), statistics.median(other)
