"""Scaled dot-product attention: the explicit CPU form equals PyTorch's fused kernel, and the dispatch rule."""

import pytest
import torch
import torch.nn.functional as F

from genlab.nn import attention as attn_module
from torch.utils._python_dispatch import TorchDispatchMode

from genlab.nn.attention import (CPU_BF16_EXPLICIT_MAX_TOKENS, attention, explicit_attention, softmax_rows,
                                 split_heads)


@pytest.mark.parametrize("tokens", [1, 13, 50])
def test_explicit_attention_equals_sdpa_with_gradients(tokens):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, tokens, 16, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ours, ref = explicit_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(ours, ref, atol=1e-12)
    w = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((ours * w).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads, ref_grads))


def test_bf16_on_the_cpu_takes_the_explicit_form_up_to_the_limit(monkeypatch):
    calls = []
    monkeypatch.setattr(attn_module, "explicit_attention", lambda q, k, v: calls.append(q.shape[-2]) or q)
    for dtype, tokens in ((torch.bfloat16, 13), (torch.bfloat16, CPU_BF16_EXPLICIT_MAX_TOKENS + 1),
                          (torch.float32, 13)):
        q = torch.zeros(1, 1, tokens, 8, dtype=dtype)
        attention(q, q, q)
    assert calls == [13]


def test_bf16_attention_matches_fp32_to_bf16_precision():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 2, 50, 32, generator=g) for _ in range(3))
    out = attention(*(t.bfloat16() for t in (q, k, v))).float()
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() < 0.03


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.softmax_dims = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        if func.overloadpacket.__name__ in ("_softmax", "_softmax_backward_data"):
            self.softmax_dims.append(args[1] if func.overloadpacket.__name__ == "_softmax" else args[2])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype, length, leading", [(torch.bfloat16, 13, True), (torch.bfloat16, 32, False),
                                                     (torch.float32, 13, True), (torch.float32, 16, False)])
def test_softmax_rows_is_softmax_and_reduces_short_rows_over_a_leading_dim(dtype, length, leading):
    g = torch.Generator().manual_seed(0)
    s = (3 * torch.randn(4, 3, 7, length, generator=g)).to(dtype).requires_grad_()
    w = torch.randn(s.shape, generator=g).to(dtype)
    with _OpLog() as log:
        ours = softmax_rows(s)
        (grad,) = torch.autograd.grad((ours * w).sum(), s)
    ref = s.softmax(dim=-1)
    (ref_grad,) = torch.autograd.grad((ref * w).sum(), s)
    tol = 2**-8 if dtype == torch.bfloat16 else 1e-6
    assert (ours.float() - ref.float()).abs().max() <= tol and (grad.float() - ref_grad.float()).abs().max() <= 4 * tol
    assert [d % s.dim() for d in log.softmax_dims] == ([0, 0] if leading else [3, 3])


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_split_heads_is_the_head_permutation_and_its_backward_copies_once(parts):
    x = torch.randn(2, 5, parts * 12, dtype=torch.float64, requires_grad=True)
    heads = split_heads(x, parts, 3)
    reference = x.view(2, 5, parts, 3, 4).permute(2, 0, 3, 1, 4)
    assert len(heads) == parts and all(torch.equal(h, r) for h, r in zip(heads, reference))
    loss = sum((h * (i + 1.0)).sum() for i, h in enumerate(heads))
    with _OpLog() as log:
        loss.backward()
    assert log.ops.count("stack") == 1 and "clone" not in log.ops  # permuting first adds a contiguous clone
    assert torch.equal(x.grad, torch.arange(1.0, parts + 1, dtype=torch.float64).repeat_interleave(12).expand(2, 5, -1))
