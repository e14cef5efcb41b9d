"""GlobalBatchNorm2d: its all-reduced statistics equal nn.BatchNorm2d's (one process); torchrun runs in test_distributed."""

import pytest
import torch
import torch.distributed as dist

from genlab.nn import batch_norm
from genlab.nn.batch_norm import GlobalBatchNorm2d


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    """A gloo group of one process, with the world reported as 2 so that the all-reduce path runs (each
    all-reduce of one process is the identity)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    monkeypatch.setattr(batch_norm, "_world", lambda: 2)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("momentum,track", [(0.1, True), (None, True), (0.1, False)])
def test_global_statistics_equal_batch_norm_with_gradients_and_running_stats(one_process_group, momentum, track):
    g = torch.Generator().manual_seed(0)
    ours, ref = (cls(3, momentum=momentum, track_running_stats=track).double()
                 for cls in (GlobalBatchNorm2d, torch.nn.BatchNorm2d))
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
            m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    for _ in range(3):
        x = (torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 3 + 7).requires_grad_()
        w = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64)
        out, expected = ours(x), ref(x)
        assert torch.allclose(out, expected, atol=1e-12)
        grads = torch.autograd.grad((out * w).sum(), (x, ours.weight, ours.bias))
        ref_grads = torch.autograd.grad((expected * w).sum(), (x, ref.weight, ref.bias))
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, ref_grads))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if track:
            assert torch.allclose(getattr(ours, name), getattr(ref, name), atol=1e-12), name
        else:
            assert getattr(ours, name) is None and getattr(ref, name) is None
    ours.eval()
    assert torch.allclose(ours(x), ref.eval()(x), atol=1e-12)


def test_one_process_is_batch_norm_itself():
    bn = GlobalBatchNorm2d(4)
    assert not dist.is_initialized() and batch_norm._world() == 1
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(bn(x), torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True))
    assert set(bn.state_dict()) == set(torch.nn.BatchNorm2d(4).state_dict())
