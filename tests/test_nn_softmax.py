"""softmax_rows: softmax over the last dimension, short rows reduced over a leading one on the CPU."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from genlab.nn.softmax import softmax_rows


class _SoftmaxDims(TorchDispatchMode):
    """The dimension each softmax kernel (forward and backward) reduces over."""

    def __init__(self):
        super().__init__()
        self.dims = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("_softmax", "_softmax_backward_data"):
            self.dims.append(args[1] if name == "_softmax" else args[2])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype, length, leading", [(torch.bfloat16, 13, True), (torch.bfloat16, 32, False),
                                                     (torch.float32, 13, True), (torch.float32, 16, False)])
def test_softmax_rows_is_softmax_and_reduces_short_rows_over_a_leading_dim(dtype, length, leading):
    g = torch.Generator().manual_seed(0)
    s = (3 * torch.randn(4, 3, 7, length, generator=g)).to(dtype).requires_grad_()
    w = torch.randn(s.shape, generator=g).to(dtype)
    with _SoftmaxDims() as log:
        ours = softmax_rows(s)
        (grad,) = torch.autograd.grad((ours * w).sum(), s)
    ref = s.softmax(dim=-1)
    (ref_grad,) = torch.autograd.grad((ref * w).sum(), s)
    tol = 2**-8 if dtype == torch.bfloat16 else 1e-6
    assert (ours.float() - ref.float()).abs().max() <= tol and (grad.float() - ref_grad.float()).abs().max() <= 4 * tol
    assert [d % s.dim() for d in log.dims] == ([0, 0] if leading else [3, 3])
