"""Exact denoisers D(x, sigma) = E[x0 | x0 + sigma n = x] for distributions known in closed form.

They follow the sampler contract ``denoiser(x, sigma)`` with sigma of shape (B,), so any sampler
can run on the true posterior mean: what is left is the sampler's own error (and, for a finite
point set, the set itself).
"""

from __future__ import annotations

import torch
from torch import Tensor


class GaussianMixtureDenoiser:
    """Isotropic Gaussian mixture sum_k w_k N(m_k, s_k^2 I); equal weights when ``weights`` is None.

    x | k ~ N(m_k, (s_k^2 + sigma^2) I), so D = sum_k p(k | x) (m_k + s_k^2 / (s_k^2 + sigma^2) (x - m_k)).
    Computed in float64, returned in x's dtype.
    """

    def __init__(self, means: Tensor, stds: Tensor | float, weights: Tensor | None = None) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        k = len(self.means)
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.log_weights = (w / w.sum()).log()

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        var = self.stds**2 + sigma.to(torch.float64)[:, None] ** 2  # (B, K)
        diff = x.to(torch.float64)[:, None, :] - self.means  # (B, K, d)
        logp = self.log_weights - diff.square().sum(-1) / (2 * var) - x.shape[1] / 2 * var.log()
        cond = self.means + (self.stds**2 / var)[..., None] * diff  # E[x0 | x, k]
        return (logp.softmax(-1)[..., None] * cond).sum(1).to(x.dtype)


class EmpiricalDenoiser:
    """The exact denoiser of the uniform distribution on ``points`` (M, d): a softmax over the points.

    D(x, sigma) = sum_i softmax_i(-|x - x_i|^2 / 2 sigma^2) x_i; its probability-flow ODE ends on
    the points themselves (it memorises). Runs in x's dtype, ``chunk`` rows of x at a time; the
    logits use x.x_i - |x_i|^2 / 2, which in float32 on unit-scale data is accurate to ~1e-3 for
    sigma >= 0.01.
    """

    def __init__(self, points: Tensor, chunk: int = 4096) -> None:
        self.points, self.chunk = torch.as_tensor(points).flatten(1), chunk

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        p = self.points.to(x.dtype)
        half_sq = p.square().sum(-1) / 2
        out = [
            (((xc.flatten(1) @ p.T - half_sq) / sc[:, None] ** 2).softmax(-1) @ p).reshape(xc.shape)
            for xc, sc in zip(x.split(self.chunk), sigma.to(x.dtype).split(self.chunk))
        ]
        return torch.cat(out)
