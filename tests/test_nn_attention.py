"""Scaled dot-product attention: the explicit CPU form equals PyTorch's fused kernel, and the dispatch rule."""

import pytest
import torch
import torch.nn.functional as F

from genlab.nn import attention as attn_module
from torch.utils._python_dispatch import TorchDispatchMode

from genlab.nn.attention import CPU_BF16_EXPLICIT_MAX_TOKENS, attention, explicit_attention, split_heads


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
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


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
