"""Softmax over the last dimension, fast on the CPU for short rows too (attention over a few tokens, spline bins)."""

from __future__ import annotations

from torch import Tensor

CPU_VECTOR_BYTES = 64  # one AVX-512 register (the rule was measured on an AVX-512 CPU)


def softmax_rows(scores: Tensor) -> Tensor:
    """``scores.softmax(-1)``, the same values; on the CPU, rows shorter than one vector register are
    reduced over a leading dimension instead.

    The CPU's last-dim kernel vectorises along each row, so a row shorter than a register (the MAE
    encoder's 13 tokens, a spline's K bins) runs as a scalar tail, row by row; over a leading
    dimension the kernel vectorises across rows (``benchmarks/attention_cpu.py`` times the explicit
    attention built on this; ``tests/test_nn_softmax.py`` pins values and dispatch).
    """
    if scores.device.type == "cpu" and scores.shape[-1] * scores.element_size() < CPU_VECTOR_BYTES:
        return scores.movedim(-1, 0).softmax(dim=0).movedim(0, -1)
    return scores.softmax(dim=-1)
