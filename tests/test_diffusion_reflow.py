"""Reflow: seeded ODE pairs, the paired loss, Trainer on pairs, and exact Gaussian straightening."""

import pytest
import torch
from torch import Tensor, nn

import genlab
from genlab.diffusion.denoiser import to_param
from genlab.diffusion.losses import diffusion_loss
from genlab.data import Dataset
from genlab.diffusion.reflow import reflow_pairs, reflow_splits, straightness
from genlab.errors import UserError
from genlab.train.config import TrainConfig
from genlab.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(data_shape=(2,), hidden=32, depth=2)
A = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)  # symmetric positive definite
SIGMA = A @ A  # data covariance; its symmetric square root is A


def g(seed=0):
    return torch.Generator().manual_seed(seed)


class LinearDenoiserNet(nn.Module):
    """A flow network whose denoiser is D(x, sigma) = K(sigma) x, as the velocity F it must output."""

    def __init__(self, K) -> None:
        super().__init__()
        self.K = K

    def forward(self, x_in: Tensor, c_noise: Tensor, class_labels=None) -> Tensor:
        t = c_noise.double() / 999
        sigma, x = t / (1 - t), x_in.double() / (1 - t)[:, None]  # c_in = s = 1 - t
        D = (self.K(sigma) @ x[:, :, None])[:, :, 0]
        return to_param("velocity", x, sigma, D).to(x_in.dtype)


def ideal_flow(K):
    m = genlab.create("flow", data_shape=(2,), hidden=4, depth=1).eval()
    m.net = m.denoiser.net = LinearDenoiserNet(K)
    return m


I2 = torch.eye(2, dtype=torch.float64)
# 1-rectified flow of N(0, SIGMA), independent coupling: D = E[x0 | x] = SIGMA (SIGMA + sigma^2 I)^-1 x.
rf1 = lambda sigma: SIGMA @ torch.linalg.inv(SIGMA + sigma[:, None, None] ** 2 * I2)  # noqa: E731
# 2-rectified flow, coupling x0 = A z: x = (A + sigma I) z, so D = A (A + sigma I)^-1 x.
rf2 = lambda sigma: A @ torch.linalg.inv(A + sigma[:, None, None] * I2)  # noqa: E731


def test_pairs_are_seeded_batch_size_free_and_equal_sample():
    m = genlab.create("flow", **SMALL).eval()
    z, x = reflow_pairs(m, 10, steps=4, generator=g())
    z2, x2 = reflow_pairs(m, 10, steps=4, generator=g(), batch_size=3)
    torch.testing.assert_close(z, z2, rtol=0, atol=0)
    torch.testing.assert_close(x, x2, rtol=0, atol=1e-6)
    torch.testing.assert_close(x, m.sample(10, generator=g(), steps=4), rtol=0, atol=0)
    _, xh = reflow_pairs(m, 10, steps=4, generator=g(), sampler="heun")
    torch.testing.assert_close(xh, m.sample(10, generator=g(), steps=4, sampler="heun"), rtol=0, atol=0)
    assert not torch.equal(z, reflow_pairs(m, 10, steps=4, generator=g(1))[0])


def test_pairs_of_a_clipping_model_equal_its_samples():
    torch.manual_seed(0)
    m = genlab.create("flow", data_shape=(1, 4, 4), channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=(),
                      clip_denoised=True).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    _, x = reflow_pairs(m, 6, steps=3, generator=g())
    torch.testing.assert_close(x, m.sample(6, generator=g(), steps=3), rtol=0, atol=0)
    assert x.abs().max() <= 1 and not torch.equal(x, m.sample(6, generator=g(), steps=3, clip_denoised=False))


def test_argument_errors():
    m = genlab.create("flow", **SMALL)
    with pytest.raises(UserError, match="deterministic ODE sampler"):
        reflow_pairs(m, 4, sampler="ddpm")
    with pytest.raises(UserError, match="n=0"):
        reflow_pairs(m, 0)
    with pytest.raises(UserError, match="steps=0"):
        reflow_pairs(m, 4, steps=0)
    with pytest.raises(UserError, match="class-conditional"):
        reflow_pairs(genlab.create("flow", num_classes=2, **SMALL), 4)
    with pytest.raises(UserError, match="straightness is defined for flows"):
        straightness(genlab.create("edm", **SMALL), 4)
    with pytest.raises(UserError, match="2 values of 'noise' for 3 examples"):
        Dataset("p", torch.zeros(3, 2), extra={"noise": torch.zeros(2, 2)})
    with pytest.raises(UserError, match="noise of shape"):
        diffusion_loss(m.denoiser, torch.zeros(3, 2), m.sigma_sampler, "velocity", noise=torch.zeros(2, 2))


def test_paired_loss_uses_the_given_noise():
    m = genlab.create("flow", **SMALL)
    with torch.no_grad():
        for p in m.parameters():  # the output layer starts at zero; make v depend on its input
            p.add_(0.1 * torch.randn(p.shape, generator=g(4)))
    x0, n = torch.randn(5, 2, generator=g(1)), torch.randn(5, 2, generator=g(2))
    fixed = lambda k, *, dtype=torch.float32, **_: torch.full((k,), 0.7, dtype=dtype)  # noqa: E731
    with torch.no_grad():
        got = diffusion_loss(m.denoiser, x0, fixed, "velocity", noise=n)
        v = m.net((x0 + 0.7 * n) / 1.7, torch.full((5,), 999 * 0.7 / 1.7))  # x_t = (1 - t) x0 + t n, t = 0.7 / 1.7
        torch.testing.assert_close(got, (v - (n - x0)).square().mean(1))  # flow matching ||v - (eps - x0)||^2
        data = Dataset("p", x0, extra={"noise": n}).subset(torch.tensor([0, 2, 4]))
        torch.testing.assert_close(data.batch(torch.arange(3))["noise"], n[[0, 2, 4]], rtol=0, atol=0)
    # The ideal 2-rectified flow of the coupling x0 = A z has zero loss on its pairs, not on fresh noise.
    z = torch.randn(64, 2, generator=g(3))
    ideal = ideal_flow(rf2)
    paired = ideal.loss({"x": z @ A.float().T, "noise": z}, "main")["loss"]
    fresh = ideal.loss({"x": z @ A.float().T}, "main")["loss"]
    assert paired < 1e-8 < 0.1 < fresh


def test_gaussian_reflow_is_the_ot_map_and_straight():
    # The exact flow of N(0, SIGMA) maps z to SIGMA^1/2 z = A z (the OT map) along curved paths ...
    z, x0 = reflow_pairs(ideal_flow(rf1), 256, steps=256, generator=g(), sampler="heun")
    torch.testing.assert_close(x0, z @ A.float().T, rtol=0, atol=2e-3)
    curved = straightness(ideal_flow(rf1), 256, steps=64, generator=g())
    # ... and reflowing on those pairs straightens them: one Euler step is the 64-step ODE solution.
    rf2_model = ideal_flow(rf2)
    straight = straightness(rf2_model, 256, steps=64, generator=g())
    assert curved.S > 0.05 and curved.length_ratio > 1.01
    assert abs(straight.S) < 1e-4 and abs(straight.length_ratio - 1) < 1e-5
    one = rf2_model.sample(256, generator=g(), steps=1)
    many = rf2_model.sample(256, generator=g(), steps=64)
    torch.testing.assert_close(one, many, rtol=0, atol=5e-4)  # float32 round-off at sigma = 999
    torch.testing.assert_close(one, z @ A.float().T, rtol=0, atol=2e-2)  # off by A^2 z / sigma_max
    assert ideal_flow(rf1).sample(256, generator=g(), steps=1).abs().max() < 0.02  # 1-RF: 1 step gives the mean


def test_trainer_retrains_on_pairs(tmp_path):
    torch.manual_seed(0)
    m = genlab.create("flow", **SMALL).eval()
    data = reflow_splits(m, 64, 16, steps=3, generator=g())
    assert set(data.train.extra) == {"noise"} and len(data.train) == 64 and len(data.test) == 16
    cfg = TrainConfig(steps=2, batch_size=32, lr=1e-3, warmup=1, eval_examples=64, num_samples=8, device="cpu")
    t = Trainer(m, data, cfg, tmp_path / "run")
    t.show_progress = False
    seen = []
    loss = m.loss
    m.loss = lambda batch, phase, ctx: seen.append(set(batch)) or loss(batch, phase, ctx)
    before = [p.clone() for p in m.parameters()]
    metrics = t.fit()
    assert all(s == {"x", "noise"} for s in seen) and len(seen) >= 2
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert metrics["steps"] == 2 and torch.isfinite(torch.tensor(metrics["test_loss"]))
