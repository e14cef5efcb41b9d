"""Normalizing flows: invertibility and log-determinants against autograd Jacobians, splines at
their edges and tails, MADE's autoregressive structure, fits checked against closed forms."""

import json
import math

import pytest
import torch
from torch.autograd.functional import jacobian

import genlab
from genlab.cli import main
from genlab.data import load_dataset
from genlab.errors import UserError
from genlab.flows.actnorm import ActNorm
from genlab.flows.autoregressive import MADE, MaskedAutoregressive
from genlab.flows.conditioners import ConvConditioner, MLPConditioner
from genlab.flows.coupling import Coupling, channel_mask, checkerboard_mask, half_mask
from genlab.flows.linear import InvertibleLinear
from genlab.flows.permutation import reverse
from genlab.flows.preprocess import Logit
from genlab.flows.reshape import Flatten, Split, Squeeze
from genlab.flows.splines import _unpack, spline_forward, spline_inverse
from genlab.flows.transforms import Affine, RationalQuadraticSpline
from resume import assert_same_checkpoints

SPLINE = RationalQuadraticSpline(bins=5, bound=2.0)


def _perturb(module, scale=0.3, seed=0):
    """Move every parameter off its identity initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def _check(layer, x, inv_tol=1e-4, det_tol=1e-4):
    """inverse(forward(x)) == x in float32; logdet == log|det dz/dx| (autograd Jacobian, float64)."""
    z, _ = layer(x)
    assert (layer.inverse(z) - x).abs().max().item() < inv_tol
    layer64, x64 = layer.double(), x.double()
    for i in range(min(len(x), 3)):
        xi = x64[i : i + 1]
        jac = jacobian(lambda v: layer64(v.view_as(xi))[0].flatten(), xi.flatten())
        logabs = torch.linalg.slogdet(jac)[1]
        assert layer64(xi)[1].item() == pytest.approx(logabs.item(), abs=det_tol)
    layer.float()


def _images(shape, n=4, seed=0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


LAYERS = {
    "affine coupling, half mask": lambda: (Coupling(half_mask(3, 1), MLPConditioner(3, 8, 2, 2), Affine()), (3,)),
    "affine coupling, checkerboard": lambda: (
        Coupling(checkerboard_mask((2, 4, 4), 0), ConvConditioner(2, 2, 8, 2), Affine()), (2, 4, 4)),
    "spline coupling, channel mask": lambda: (
        Coupling(channel_mask((4, 2, 2), 1), ConvConditioner(4, 4, 8, SPLINE.num_params), SPLINE), (4, 2, 2)),
    "spline coupling, vector": lambda: (Coupling(half_mask(3, 0), MLPConditioner(3, 8, 1, SPLINE.num_params), SPLINE), (3,)),
    "MAF layer": lambda: (MaskedAutoregressive(torch.tensor([2, 4, 1, 3]), 12, 2, Affine()), (4,)),
    "spline autoregressive": lambda: (MaskedAutoregressive(torch.arange(4, 0, -1), 12, 1, SPLINE), (4,)),
    "actnorm, vector": lambda: (ActNorm(3), (3,)),
    "actnorm, image": lambda: (ActNorm(2), (2, 3, 3)),
    "invertible linear": lambda: (InvertibleLinear(3), (3,)),
    "invertible 1x1 conv": lambda: (InvertibleLinear(4), (4, 2, 2)),
    "squeeze": lambda: (Squeeze(), (1, 4, 4)),
    "flatten": lambda: (Flatten((2, 2, 2)), (2, 2, 2)),
    "reverse": lambda: (reverse(5), (5,)),
    "split with learned prior": lambda: (
        Split((4, 2, 2), [Squeeze(), ActNorm(8)], ConvConditioner(2, 2, 8, 2)), (4, 2, 2)),
    "split, no prior": lambda: (Split((2, 2, 2), [InvertibleLinear(1)]), (2, 2, 2)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_inverts_and_its_logdet_is_the_jacobian_determinant(name):
    torch.manual_seed(0)
    layer, shape = LAYERS[name]()
    _perturb(layer, scale=0.1 if "spline" in name else 0.3)  # steeper splines are ill-conditioned in float32
    _check(layer, _images(shape, seed=1) * 1.5)


def test_logit_preprocessing_inverts_and_counts_its_logdet():
    bins = 256
    x = torch.randint(0, bins, (4, 1, 3, 3), generator=torch.Generator().manual_seed(0)) * (2 / 255) - 1
    y = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * (2 / 255)  # dequantized, [-1, 1 + delta)
    y[0, 0, 0, 0], y[0, 0, 0, 1] = -1.0, 1 + 2 / 255 - 1e-6  # both ends of the range
    _check(Logit(bins, 0.05), y)


def test_splines_at_bin_edges_and_in_the_tails():
    g = torch.Generator().manual_seed(0)
    params = 2 * torch.randn(6, SPLINE.num_params, generator=g)
    knots = _unpack(params, SPLINE.bound)[1]  # every knot of every element's spline, ends included
    for j in range(knots.shape[1]):
        _check(_Elementwise(params), knots[:, j].contiguous().view(1, -1).clone())
    tails = torch.tensor([[-5.0, -2.0001, 2.0001, 7.0, -2.0, 2.0]])
    y, ld = spline_forward(tails[0], params, SPLINE.bound)
    assert torch.equal(y[:4], tails[0, :4]) and torch.equal(ld[:4], torch.zeros(4))  # identity outside [-B, B]
    assert torch.allclose(y[4:], tails[0, 4:])  # the ends map to themselves
    _check(_Elementwise(params), tails)


class _Elementwise(torch.nn.Module):
    """The spline as a layer with fixed per-element parameters, for the Jacobian check."""

    def __init__(self, params):
        super().__init__()
        self.register_buffer("params", params)

    def forward(self, x):
        y, ld = spline_forward(x[0], self.params.to(x.dtype), SPLINE.bound)
        return y[None], ld.sum()[None]

    def inverse(self, y):
        return spline_inverse(y[0], self.params.to(y.dtype), SPLINE.bound)[0][None]


def test_spline_gradients_are_finite_when_every_input_is_in_the_tails():
    params = torch.zeros(5, SPLINE.num_params, requires_grad=True)
    x = torch.tensor([-9.0, 3.0, 1e6, -2.5, 4.0], requires_grad=True)
    y, ld = spline_forward(x, params, SPLINE.bound)
    (y.sum() + ld.sum()).backward()
    assert torch.equal(y, x.detach()) and torch.equal(x.grad, torch.ones(5))
    assert torch.isfinite(params.grad).all() and torch.equal(params.grad, torch.zeros_like(params))
    x = torch.linspace(-3, 3, 101, requires_grad=True)  # mixed, with one spline of extreme parameters
    p = (30 * torch.randn(SPLINE.num_params, generator=torch.Generator().manual_seed(0))).expand(101, -1).clone()
    p.requires_grad_()
    y, ld = spline_forward(x, p, SPLINE.bound)
    (y.sum() + ld.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(p.grad).all()
    assert (y[1:] >= y[:-1]).all()  # monotone
    assert spline_forward(torch.empty(0), torch.empty(0, SPLINE.num_params), 2.0)[0].shape == (0,)


def test_zero_parameters_are_the_identity():
    x = torch.linspace(-2.5, 2.5, 11)
    y, ld = spline_forward(x, torch.zeros(11, SPLINE.num_params), SPLINE.bound)
    assert torch.allclose(y, x, atol=1e-6) and ld.abs().max() < 1e-6


def test_made_outputs_depend_only_on_earlier_inputs_in_the_order():
    order = torch.tensor([3, 1, 4, 2, 5])
    made = _perturb(MADE(order, hidden=7, depth=2, params=2), scale=1.0)
    g = torch.Generator().manual_seed(0)
    jac = sum(jacobian(lambda v: made(v[None])[0], torch.randn(5, generator=g)).abs() for _ in range(8))  # (D, P, D)
    depends = jac.sum(1) > 0
    allowed = order[:, None] > order[None, :]
    assert not (depends & ~allowed).any()
    assert depends.sum() == allowed.sum()  # and on every one of them (7 hidden units, D - 1 = 4 degrees)


VECTOR_FLOWS = {"realnvp": {}, "glow": {}, "maf": {}, "nsf": dict(tail_bound=2.0)}
SMALL = dict(transforms=2, hidden=16, depth=1, channels=8)


@pytest.mark.parametrize("name", list(VECTOR_FLOWS))
def test_registered_vector_flows_invert_and_match_autograd(name):
    torch.manual_seed(0)
    model = genlab.create(name, data_shape=(3,), **SMALL, **VECTOR_FLOWS[name])
    _perturb(model.flow)
    x = _images((3,), n=6) * 1.2  # some beyond the spline bound
    _check(model.flow, x)
    assert model.flow.log_prob(x).shape == (6,)


def test_sample_defaults_are_what_sample_uses():
    model = genlab.create("realnvp", data_shape=(3,), **SMALL).eval()
    draw = lambda **kw: model.sample(4, generator=torch.Generator().manual_seed(0), **kw)  # noqa: E731
    torch.testing.assert_close(draw(**model.sample_defaults()), draw(), rtol=0, atol=0)
    assert not torch.equal(draw(temperature=0.5), draw())


@pytest.mark.parametrize("name", ["realnvp", "glow", "maf", "nsf"])
def test_registered_image_flows_invert_and_match_autograd(name):
    """RGB, non-square, two scales: glow / nsf squeeze twice and split with a learned prior."""
    torch.manual_seed(0)
    shape = (3, 4, 8) if name in ("glow", "nsf") else (3, 2, 4)
    model = genlab.create(name, data_shape=shape, bins=256, levels=2, **SMALL)
    _perturb(model.flow, scale=0.1)
    y = torch.rand((3, *shape), generator=torch.Generator().manual_seed(0)) * 1.9 - 0.95
    _check(model.flow, y, det_tol=1e-4)
    assert model.flow.base.shape == (math.prod(shape),)
    if name in ("glow", "nsf"):
        assert any(isinstance(m, Split) and m.prior is not None for m in model.flow.modules())


@pytest.mark.parametrize("name", ["glow", "nsf"])
def test_bf16_autocast_keeps_the_bijection_and_its_logdet_in_float32(name):
    torch.manual_seed(0)
    model = genlab.create(name, data_shape=(1, 4, 4), bins=256, levels=1, **SMALL)
    _perturb(model.flow, scale=0.1)
    y = torch.rand((8, 1, 4, 4), generator=torch.Generator().manual_seed(0)) * 1.9 - 0.95
    ref = model.flow.log_prob(y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, logdet = model.flow(y)
        low = model.flow.log_prob(y)
        back = model.flow.inverse(z)  # the same bf16-rounded conditioner outputs: the map stays a bijection
    assert z.dtype == torch.float32 and logdet.dtype == torch.float32
    assert (back - y).abs().max() < 1e-4
    assert (low - ref).abs().max() < 0.05 * ref.abs().max()


def _fit(name, data, train_steps, lr=5e-3, **kw):
    from genlab.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = genlab.create(name, data=data, **kw)
    t = Trainer(model, data, TrainConfig(steps=train_steps, batch_size=256, lr=lr, warmup=10, eval_examples=256,
                                         num_samples=16, log_every=50), _fit.root / f"{name}-{train_steps}")
    t.show_progress = False
    t.fit()
    return t.ema.model, t


def test_a_flow_fitted_to_a_gaussian_recovers_its_mean_and_covariance(tmp_path):
    from genlab.data.dataset import Dataset, Splits

    _fit.root = tmp_path
    g = torch.Generator().manual_seed(0)
    mean, chol = torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.0], [0.8, 0.5]])
    x = torch.randn(8000, 2, generator=g) @ chol.T + mean
    data = Splits(Dataset("gauss", x[:6000]), Dataset("gauss", x[6000:]))
    model, _ = _fit("glow", data, 300, transforms=2, hidden=16, depth=1)
    s = model.sample(20000, generator=torch.Generator().manual_seed(1))
    cov = torch.cov(s.T)
    print("mean", s.mean(0).tolist(), "cov", cov.tolist())
    assert torch.allclose(s.mean(0), mean, atol=0.05)
    assert torch.allclose(cov, chol @ chol.T, atol=0.08)
    exact = torch.distributions.MultivariateNormal(mean, scale_tril=chol).log_prob(x[6000:]).mean()
    assert model.log_prob(x[6000:]).mean().item() == pytest.approx(exact.item(), abs=0.03)


def test_the_density_of_a_trained_toy_flow_integrates_to_one(tmp_path):
    _fit.root = tmp_path
    model, _ = _fit("nsf", load_dataset("moons"), 150, transforms=2, hidden=32)
    h = 0.02
    g = torch.arange(-4.0, 4.0, h) + h / 2
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).view(-1, 2)
    mass = (model.log_prob(grid).exp().sum() * h * h).item()
    print("mass on [-4, 4]^2", mass)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_images_train_through_the_cli_sample_on_the_data_levels_and_resume_exactly(tmp_path):
    import shutil

    args = ["train", "glow", "--data", "digits", "--batch-size", "32", "transforms=2", "channels=8", "ckpt_every=4",
            "log_every=2", "eval_examples=64", "num_samples=16", "--no-progress"]
    assert main([*args, "--steps", "8", "--out", str(tmp_path / "a")]) == 0
    metrics = json.loads((tmp_path / "a/metrics.json").read_text())
    bpd = metrics["bits_per_dim"]
    assert 0 < bpd < 8
    model = genlab.Model.from_pretrained(tmp_path / "a/model")
    s = model.sample(5, generator=torch.Generator().manual_seed(0), temperature=0.7)
    levels = (s + 1) * (model.config.bins - 1) / 2  # digits: 17 levels, 0..16
    assert s.shape == (5, 1, 8, 8) and torch.allclose(levels, levels.round(), atol=1e-4)
    assert main(["sample", str(tmp_path / "a"), "-n", "5", "--temperature", "0.7", "--out", str(tmp_path / "s.npz")]) == 0
    torch.testing.assert_close(torch.from_numpy(__import__("numpy").load(tmp_path / "s.npz")["x"]), s)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_8")
    assert main([*args, "--steps", "8", "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert_same_checkpoints(tmp_path / "a", tmp_path / "b", 8)


def test_actnorm_is_initialised_from_data_and_float64_evaluation_agrees():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("glow", data=data, transforms=1, channels=8)
    x = data.train.batch(torch.arange(256))["x"]
    model.init_from_data({"x": x})
    an = next(m for m in model.flow.modules() if isinstance(m, ActNorm))
    h, _ = model.flow.transform.layers[0](x + 1 / 15)  # after the logit pre-processing
    out, _ = an(model.flow.transform.layers[1](h)[0])
    assert out.mean(dim=(0, 2, 3)).abs().max() < 0.1 and (out.std(dim=(0, 2, 3)) - 1).abs().max() < 0.1
    lp32 = model.log_prob(x[:16], generator=torch.Generator().manual_seed(0))
    model.config.eval_float64 = True
    lp64 = model.log_prob(x[:16], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lp32, lp64, rtol=1e-5, atol=1e-3) and lp64.dtype == torch.float32


BAD = [
    (dict(name="nsf", data_shape=(2,), spline_bins=1), "spline_bins=1"),
    (dict(name="glow", data_shape=(1, 27, 27)), "27x27 is not divisible by 4"),
    (dict(name="realnvp", data_shape=(1, 28, 28), levels=4), "halves the image 3 times"),
    (dict(name="realnvp", data_shape=(1,)), "needs >= 2 dimensions"),
    (dict(name="maf", data_shape=(2,), arch="made"), "arch='made'"),
    (dict(name="glow", data_shape=(1, 8, 8), bins=256, logit_alpha=0.5), "logit_alpha=0.5"),
    (dict(name="nsf", data_shape=(2,), spline_bins=1000), "fewer than 1000"),
    (dict(name="realnvp", data_shape=(1, 4, 4), levels=3), "1x1 last scale"),
]


@pytest.mark.parametrize("kw,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_settings_are_user_errors(kw, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        genlab.create(kw.pop("name"), **kw)


def test_bad_layers_and_data_are_user_errors():
    with pytest.raises(UserError, match="3 channels is odd"):
        channel_mask((3, 4, 4), 0)
    with pytest.raises(UserError, match="3 channels is odd"):
        Split((3, 2, 2), [])
    with pytest.raises(UserError, match="odd side"):
        Squeeze()(torch.zeros(1, 1, 3, 4))
    model = genlab.create("realnvp", data_shape=(1, 4, 4), bins=256, transforms=1, channels=4, levels=1)
    with pytest.raises(UserError, match="outside the dequantization range"):
        model.log_prob(torch.full((2, 1, 4, 4), 1.5))
    with pytest.raises(UserError, match="examples of shape"):
        model.log_prob(torch.zeros(2, 4, 4))
    for bad in (dict(temperature=0), dict(temperature="a"), dict(batch_size=0), dict(batch_size="a")):
        with pytest.raises(UserError, match=next(iter(bad))):
            model.sample(2, **bad)
    with pytest.raises(UserError, match="unknown sampling option"):
        model.sample(2, class_labels=[0, 1])


def test_cli_lists_flows_and_gans(capsys):  # their bad CLI values are in tests/test_cli.py's table
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in ("realnvp", "glow", "maf", "nsf", "gan", "wgan", "wgan-gp", "r3gan"))
