"""benchmarks/profiling.py: the matmul / attention / other CPU-time split behind the peak-share tables."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profiling import cpu_time_shares, cpu_time_split  # noqa: E402


def test_addmm_bias_copy_counts_as_matmul_time():
    """addmm copies its bias into the output before the GEMM; that copy is the matmul's cost, not 'other'."""
    b, x, w = torch.randn(256), torch.randn(512, 128), torch.randn(128, 256)
    matmul, other = cpu_time_split(lambda: torch.addmm(b, x, w), repeats=1)
    assert matmul > 0
    assert abs(other) < 1e-9  # every event is addmm or inside it


def test_work_outside_matmuls_is_other():
    x = torch.randn(512, 512)
    matmul, other = cpu_time_split(lambda: torch.nn.functional.gelu(x) + x, repeats=1)
    assert matmul == 0 and other > 0


def test_fused_attention_is_its_own_share_with_the_kernels_inside_it():
    q = k = v = torch.randn(8, 2, 16, 8)
    matmul, attention, other = cpu_time_shares(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), 1)
    assert matmul == 0 and attention > 0
    assert abs(other) < 1e-9  # every event is SDPA or inside it
    matmul, attention, other = cpu_time_shares(lambda: (q @ k.transpose(-2, -1)).softmax(-1) @ v, 1)
    assert matmul > 0 and attention == 0 and other > 0  # the explicit form: two bmm and a softmax
    assert cpu_time_split(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), 1)[0] == 0
