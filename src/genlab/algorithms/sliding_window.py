"""Sliding window maximum (LeetCode 239): a list version, a vectorised numpy version, a stream.

- :func:`sliding_window_max` keeps a monotonic deque of indices: pure Python, list in, list out.
- :func:`sliding_window_max_np` is vectorised numpy along any axis of an N-d array. Van Herk /
  Gil-Werman (running maxima forward and backward inside blocks of ``k``) needs
  ``np.maximum.accumulate``, which runs one value at a time, about 15 times slower per value
  than a SIMD ``np.maximum`` pass; so it is built from such passes instead. Windows up to 255
  use doubling: a window of ``2p`` is the max of two windows of ``p`` (at most 8 passes).
  Larger windows use two levels, in van Herk's spirit: a window is a window of 32 at its start,
  whole blocks of 16 in the middle and a window of 32 at its end. That is 7 passes, plus the
  same function on the 16 times shorter array of block maxima: O(n) for any ``k``. The passes
  run a cache-sized chunk at a time between two scratch buffers (in place, numpy would fall
  back from SIMD to a scalar loop).
- :class:`SlidingWindowMax` is the deque as a stream (the trainer's loss-spike detector).

All three are O(n) whatever ``k``. NaN propagates as in :func:`numpy.maximum`: a window that
holds a NaN has maximum NaN.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Sequence

import numpy as np

from genlab.errors import UserError

__all__ = ["SlidingWindowMax", "sliding_window_max", "sliding_window_max_np"]

_BLOCK = 16  # block length of the two-level algorithm; a power of 2
# Doubling needs floor(log2 k) + 1 passes, the two-level algorithm about 8: switch at k = 256.
_DOUBLING_MAX_K = 255
_CHUNK = 1 << 17  # values per chunk: a chunk's passes stay in cache


def _check_k(k: int, n: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise UserError(f"k must be an integer, got {k!r}")
    if n == 0:
        raise UserError(f"{what}=0: no window of k={k} values fits")
    if not 1 <= k <= n:
        raise UserError(f"k must be between 1 and {what}={n}, got {k}")


def sliding_window_max(nums: Sequence[float], k: int) -> list[float]:
    """The maximum of each window of ``k`` consecutive values: ``len(nums) - k + 1`` of them.

    >>> sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3)
    [3, 3, 5, 5, 6, 7]
    """
    _check_k(k, len(nums), "len(nums)")
    window: deque[int] = deque()  # indices whose values decrease from front to back
    out: list[float] = []
    push, pop, popleft, emit = window.append, window.pop, window.popleft, out.append
    start = 1 - k  # first index of the window that ends at i
    for i, v in enumerate(nums):
        if v != v:  # NaN dominates every value until it leaves the window
            window.clear()
        while window and nums[window[-1]] <= v:
            pop()
        push(i)
        if window[0] < start:
            popleft()
        if start >= 0:
            emit(nums[window[0]])
        start += 1
    return out


def sliding_window_max_np(a: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """The maximum of each window of ``k`` consecutive entries of ``a`` along ``axis``.

    ``a`` may have any number of dimensions and any integer, float or bool dtype; the result has
    the same dtype and shape except ``n - k + 1`` entries along ``axis`` (``n = a.shape[axis]``).
    A window holding a NaN gives NaN, as :func:`numpy.maximum` does.

    >>> sliding_window_max_np(np.array([[1, 3, -1, -3], [5, 3, 6, 7]]), 3, axis=1)
    array([[3, 3],
           [6, 7]])
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise UserError(f"sliding_window_max_np needs an int, float or bool array, got {arr.dtype}")
    if arr.ndim == 0:
        raise UserError("sliding_window_max_np needs an array with at least one dimension")
    if not -arr.ndim <= axis < arr.ndim:
        raise UserError(f"axis {axis} is out of range for an array with {arr.ndim} dimensions")
    x = np.moveaxis(arr, axis, -1)  # a view: no data moves
    n = x.shape[-1]
    _check_k(k, n, f"a.shape[{axis}]")
    return np.moveaxis(_window_max(x, k), -1, axis)


def _window_max(x: np.ndarray, k: int) -> np.ndarray:
    """Windows of ``k`` along the last axis, a chunk at a time; memory: output + 2 chunks."""
    lead, n = x.shape[:-1], x.shape[-1]
    m = n - k + 1
    out = np.empty_like(x, shape=lead + (m,))  # same memory order as x, as all buffers below
    if k == 1:
        out[...] = x
        return out
    step = max(_CHUNK // max(math.prod(lead), 1), 2 * k)
    scratch = [np.empty_like(x, shape=lead + (min(step, m) + k - 1,)) for _ in range(2)]
    fill = _doubling_into if k <= _DOUBLING_MAX_K else _two_level_into
    for start in range(0, m, step):
        stop = min(start + step, m)
        fill(x[..., start : stop + k - 1], k, out[..., start:stop], scratch)
    return out


def _doubling(
    x: np.ndarray, k: int, scratch: list[np.ndarray]
) -> tuple[np.ndarray, int, np.ndarray]:
    """Windows of ``p``, the largest power of 2 <= k: ``(windows, p, the free scratch buffer)``."""
    n = x.shape[-1]
    src, p, free, other = x, 1, scratch[0], scratch[1]
    while 2 * p <= k:
        dst = free[..., : n - 2 * p + 1]
        np.maximum(src[..., : n - 2 * p + 1], src[..., p : n - p + 1], out=dst)
        src, p, free, other = dst, 2 * p, other, free
    return src, p, free


def _doubling_into(x: np.ndarray, k: int, out: np.ndarray, scratch: list[np.ndarray]) -> None:
    """``out[i] = max(x[i : i + k])``: two overlapping windows of ``p``, ``p <= k < 2p``."""
    w, p, _ = _doubling(x, k, scratch)
    m = out.shape[-1]
    np.maximum(w[..., :m], w[..., k - p : k - p + m], out=out)


def _two_level_into(x: np.ndarray, k: int, out: np.ndarray, scratch: list[np.ndarray]) -> None:
    """``out[i] = max(x[i : i + k])`` for ``k >= 2b``, in O(n).

    Window ``i = s*b + c`` (``0 <= c < b``) is covered by the window of ``2b`` at its start, the
    whole blocks ``s+1 .. s+q-1`` (``q = k // b``) and the window of ``2b`` at its end.
    """
    lead, n, m, b = x.shape[:-1], x.shape[-1], out.shape[-1], _BLOCK
    w, _, free = _doubling(x, b, scratch)  # w[i] = max(x[i : i + b]); w[t*b]: block t
    middle = _window_max(w[..., ::b].copy(order="K"), k // b - 1)
    length = n - 2 * b + 1
    w2 = np.maximum(w[..., :length], w[..., b : b + length], out=free[..., :length])
    np.maximum(w2[..., :m], w2[..., k - 2 * b : k - 2 * b + m], out=out)
    rows = m // b
    grid = out[..., : rows * b].reshape(lead + (rows, b))  # a view: it splits the last axis
    np.maximum(grid, middle[..., 1 : rows + 1, None], out=grid)
    rest = out[..., rows * b :]
    np.maximum(rest, middle[..., rows + 1 : rows + 2], out=rest)


class SlidingWindowMax:
    """The running maximum of the last ``k`` values pushed (monotonic deque, O(1) amortised)."""

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise UserError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self._count = 0
        self._window: deque[tuple[int, float]] = deque()  # (index, value), values decreasing

    def push(self, value: float) -> float:
        """Add ``value``; return the maximum of the last ``k`` values (all of them, if fewer)."""
        window = self._window
        if value != value:  # NaN dominates every value until it leaves the window
            window.clear()
        while window and window[-1][1] <= value:
            window.pop()
        window.append((self._count, value))
        if window[0][0] <= self._count - self.k:
            window.popleft()
        self._count += 1
        return window[0][1]
