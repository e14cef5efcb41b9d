"""Where a step's work goes, split into matrix multiplies, fused attention and everything else: FLOPs
counted by ``torch.utils.flop_counter`` and CPU time from ``torch.profiler``."""

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


def _is_attention(event) -> bool:
    return "scaled_dot_product" in event.name  # the SDPA operator and the fused kernels it dispatches to


def _outermost(event, match: Callable[[object], bool]) -> bool:
    """Whether ``event`` matches and no operator around it does (its time then counts once, with its children)."""
    parent = event.cpu_parent
    while parent is not None:
        if _is_matmul(parent) or _is_attention(parent):
            return False
        parent = parent.cpu_parent
    return match(event)


def _profiled_times(fn: Callable[[], object], repeats: int) -> list[tuple[float, float, float]]:
    """(matmul, attention, other) CPU seconds of each of ``repeats`` profiled calls of ``fn``."""
    times = []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        events = prof.events()
        mm = sum(e.cpu_time_total for e in events if _outermost(e, _is_matmul)) / 1e6
        attn = sum(e.cpu_time_total for e in events if _outermost(e, _is_attention)) / 1e6
        times.append((mm, attn, sum(e.self_cpu_time_total for e in events) / 1e6 - mm - attn))
    return times


def cpu_time_shares(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float, float]:
    """CPU seconds of a call of ``fn`` in matrix-multiply operators, in fused attention (SDPA) and in all
    others (medians over ``repeats`` profiled calls). An operator's time includes the operators it calls
    itself (addmm copying the bias into its output, mm making an operand contiguous, the kernels inside
    SDPA): they are part of that operator's cost, the rest is self time."""
    times = _profiled_times(fn, repeats)
    return tuple(statistics.median(t[i] for t in times) for i in range(3))


def cpu_time_split(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """CPU seconds of a call of ``fn`` in matrix-multiply operators and in all others, fused attention
    included (medians over ``repeats`` profiled calls; what counts where as in :func:`cpu_time_shares`)."""
    times = _profiled_times(fn, repeats)
    return statistics.median(t[0] for t in times), statistics.median(t[1] + t[2] for t in times)
