"""BatchNorm over the global batch: under torchrun N processes normalise as one process holding it all.

``nn.BatchNorm2d`` normalises each process's share of the batch with that share's statistics, so a
data-parallel run trains a different model from a one-process run of the same global batch.
``nn.SyncBatchNorm`` fixes that on GPUs only. :class:`GlobalBatchNorm2d` computes the
per-channel mean and (biased) variance of the whole batch on any device: the sums are
all-reduced with autograd (:class:`AllReduceSum`), so their gradients are summed across
processes too, as the one-process gradient of the batch statistics requires. The mean is
reduced first and then the squared deviations from it (two passes, as ``nn.BatchNorm2d``
computes them, not E[x^2] - E[x]^2). With one process, or outside training, it is
``nn.BatchNorm2d`` itself. Same parameters and buffers, so state dicts are unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over processes, differentiable: each process's input feeds every
    process's output, so its gradient is the sum of all processes' output gradients.
    (``torch.distributed.nn.functional.all_reduce`` does the same and is deprecated.)"""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone(memory_format=torch.contiguous_format)  # gloo takes contiguous tensors only
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return AllReduceSum.apply(grad)  # itself differentiable, so a double backward stays exact


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover the batch of every process."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _world() > 1):
            return super().forward(x)
        all_reduce = AllReduceSum.apply
        dims = (0, 2, 3)
        count = all_reduce(x.new_tensor([x.numel() / x.shape[1]]))
        mean = all_reduce(x.sum(dims)) / count  # mu_B over the global batch
        centred = x - mean[:, None, None]
        var = all_reduce(centred.square().sum(dims)) / count  # sigma_B^2, biased, as used to normalise
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * count / (count - 1))  # unbiased, as nn.BatchNorm2d
        out = centred * torch.rsqrt(var + self.eps)[:, None, None]
        return out * self.weight[:, None, None] + self.bias[:, None, None] if self.affine else out

    @torch.no_grad()
    def _track(self, mean: Tensor, unbiased_var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)
