"""Sliding window maximum: LeetCode examples, property tests against O(nk) brute force, errors."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genlab.algorithms import sliding_window as sw
from genlab.algorithms.sliding_window import (
    SlidingWindowMax,
    sliding_window_max,
    sliding_window_max_np,
)
from genlab.errors import UserError

FEW = settings(max_examples=60, deadline=None)


def sliding_window_max_brute(nums, k):
    """O(nk) reference: the max of every slice of length k."""
    return [max(nums[i : i + k]) for i in range(len(nums) - k + 1)]


def brute_np(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    x = np.moveaxis(a, axis, -1)
    wins = [x[..., i : i + k].max(axis=-1) for i in range(x.shape[-1] - k + 1)]
    return np.moveaxis(np.stack(wins, axis=-1), -1, axis)


@st.composite
def list_and_k(draw, values):
    nums = draw(st.lists(values, min_size=1, max_size=60))
    return nums, draw(st.integers(1, len(nums)))


@st.composite
def array_axis_k(draw):
    dtypes = [np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64, bool]
    dtype = draw(st.sampled_from(dtypes))
    ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(-ndim, ndim - 1))
    shape = [draw(st.integers(1, 4)) for _ in range(ndim)]
    shape[axis] = draw(st.integers(1, 150))
    kind = np.dtype(dtype).kind  # small ranges: many duplicates
    elements = {"i": st.integers(-3, 3), "f": st.integers(-3, 3), "u": st.integers(0, 5)}.get(kind)
    a = draw(hnp.arrays(dtype, tuple(shape), elements=elements))
    return a, axis, draw(st.integers(1, shape[axis]))


def test_leetcode_examples():
    assert sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3) == [3, 3, 5, 5, 6, 7]
    assert sliding_window_max([1], 1) == [1]
    got = sliding_window_max_np(np.array([1, 3, -1, -3, 5, 3, 6, 7]), 3)
    np.testing.assert_array_equal(got, [3, 3, 5, 5, 6, 7])


@FEW
@given(list_and_k(st.integers(-5, 5)))
def test_list_ints_match_brute(case):
    nums, k = case
    assert sliding_window_max(nums, k) == sliding_window_max_brute(nums, k)


@FEW
@given(list_and_k(st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([-0.5, 0.0, 2.5])))
def test_list_floats_match_brute(case):
    nums, k = case
    assert sliding_window_max(nums, k) == sliding_window_max_brute(nums, k)


@FEW
@given(array_axis_k())
def test_numpy_matches_brute(case):
    a, axis, k = case
    want = brute_np(a, k, axis)
    got = sliding_window_max_np(a, k, axis=axis)
    assert got.dtype == a.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# (largest k for doubling, block length, chunk length): the default, and small ones that send
# tiny arrays through the two-level algorithm, its recursion on block maxima and many chunks.
CONFIGS = [
    {"_DOUBLING_MAX_K": 255, "_BLOCK": 16, "_CHUNK": 1 << 17},
    {"_DOUBLING_MAX_K": 3, "_BLOCK": 2, "_CHUNK": 8},
    {"_DOUBLING_MAX_K": 7, "_BLOCK": 4, "_CHUNK": 50},
]


@FEW
@given(array_axis_k())
def test_every_algorithm_and_chunking_matches_brute(case):
    a, axis, k = case
    want = brute_np(a, k, axis)
    for config in CONFIGS:
        with mock.patch.multiple(sw, **config):
            np.testing.assert_array_equal(sliding_window_max_np(a, k, axis=axis), want)


def test_numpy_both_paths_on_known_values():
    a = np.arange(1200, dtype=np.float64)[::-2] % 37  # sawtooth, strided view
    for k in (1, 2, 5, 64, 255, 256, 257, 300, 599, 600):
        np.testing.assert_array_equal(sliding_window_max_np(a, k), brute_np(a, k, 0))
    assert sliding_window_max_np(a, 600).tolist() == [36.0]
    b = np.random.default_rng(0).standard_normal((2, 100_000))
    for k in (256, 1000):  # two levels, several chunks; against k shifted views (also O(nk))
        want = b[:, : b.shape[1] - k + 1].copy()
        for j in range(1, k):
            np.maximum(want, b[:, j : j + want.shape[1]], out=want)
        np.testing.assert_array_equal(sliding_window_max_np(b, k), want)


def test_numpy_fortran_order_and_list_input():
    a = np.asfortranarray(np.arange(24, dtype=np.int16).reshape(4, 6) * [1, -1, 1, -1, 1, -1])
    np.testing.assert_array_equal(sliding_window_max_np(a, 2, axis=0), brute_np(a, 2, 0))
    np.testing.assert_array_equal(sliding_window_max_np(a, 3, axis=1), brute_np(a, 3, 1))
    assert sliding_window_max_np([4, 1, 2], 2).tolist() == [4, 2]


@pytest.mark.parametrize("k", [2, 3, 70, 300])
def test_nan_propagates_to_the_windows_that_hold_it(k):
    a = np.arange(1000, dtype=np.float64) % 7
    a[500] = np.nan
    got = sliding_window_max_np(a, k)
    want = brute_np(a, k, 0)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == k
    nums = a.tolist()
    got_list = sliding_window_max(nums, k)
    assert [math.isnan(v) for v in got_list] == [bool(np.isnan(v)) for v in want]
    assert np.array_equal(got_list, want, equal_nan=True)
    stream = SlidingWindowMax(k)
    pushed = [stream.push(v) for v in nums]
    assert np.array_equal(pushed[k - 1 :], want, equal_nan=True)


@FEW
@given(
    st.lists(st.integers(-5, 5) | st.floats(-10, 10), min_size=1, max_size=60),
    st.integers(1, 8),
)
def test_stream_matches_brute(values, k):
    stream = SlidingWindowMax(k)
    for i, v in enumerate(values):
        assert stream.push(v) == max(values[max(0, i - k + 1) : i + 1])


def test_stream_known_sequence():
    stream = SlidingWindowMax(3)
    assert [stream.push(v) for v in [1, 3, -1, -3, 5, 3, 6, 7]] == [1, 3, 3, 3, 5, 5, 6, 7]


def test_error_messages():
    with pytest.raises(UserError, match=r"k must be between 1 and len\(nums\)=8, got 0"):
        sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 0)
    with pytest.raises(ValueError, match=r"k must be between 1 and len\(nums\)=2, got 3"):
        sliding_window_max([1, 2], 3)
    with pytest.raises(ValueError, match=r"len\(nums\)=0: no window of k=1 values fits"):
        sliding_window_max([], 1)
    with pytest.raises(UserError, match=r"k must be between 1 and a.shape\[1\]=4, got 5"):
        sliding_window_max_np(np.zeros((2, 4)), 5, axis=1)
    with pytest.raises(UserError, match=r"k must be between 1 and a.shape\[-1\]=4, got -1"):
        sliding_window_max_np(np.zeros((2, 4)), -1)
    with pytest.raises(UserError, match=r"a.shape\[-1\]=0: no window"):
        sliding_window_max_np(np.zeros((3, 0)), 1)
    with pytest.raises(UserError, match=r"k must be an integer, got 2.0"):
        sliding_window_max_np(np.zeros(4), 2.0)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"axis 2 is out of range"):
        sliding_window_max_np(np.zeros((2, 4)), 1, axis=2)
    with pytest.raises(UserError, match=r"int, float or bool array, got complex128"):
        sliding_window_max_np(np.zeros(4, dtype=complex), 1)
    with pytest.raises(UserError, match=r"k must be a positive integer, got 0"):
        SlidingWindowMax(0)
