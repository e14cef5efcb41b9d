"""The registry presets: every trained model can be sampled by every sampler, seeded per sample."""

import pytest
import torch

import genlab
from genlab.errors import UserError
from genlab.model import Model

PRESETS = ["ddpm", "ddim", "vp", "ve", "edm", "flow"]
SMALL = dict(data_shape=(2,), hidden=32, depth=2)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_train_and_sample_with_every_sampler(name):
    torch.manual_seed(0)
    m = genlab.create(name, **SMALL)
    x = torch.randn(64, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(3):
        loss = m.loss({"x": x}, "main")["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    m.eval()
    grids = {"karras": "karras", "uniform_t": "uniform_t"} if name == "flow" else {"karras": "karras"}
    if name in ("ddpm", "ddim", "vp"):
        grids["ddpm"] = "ddpm"
    for grid in grids:
        if grid == "karras" and name == "flow":
            continue
        for sampler in ("euler", "heun", "edm", "ddim", "ddpm", "dpmpp_2m"):
            out = m.sample(5, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=4, grid=grid)
            assert out.shape == (5, 2) and torch.isfinite(out).all(), (sampler, grid)
            assert m.last_nfe == (7 if sampler in ("heun", "edm") else 4)


@pytest.mark.parametrize("name", PRESETS)
def test_sample_defaults_are_what_sample_uses(name):
    torch.manual_seed(0)
    m = genlab.create(name, **SMALL).eval()
    with torch.no_grad():  # the output layer starts at zero, which makes every sampler a no-op
        for p in m.parameters():
            p.normal_(0, 0.1)
    draw = lambda **kw: m.sample(4, generator=torch.Generator().manual_seed(0), **kw)  # noqa: E731
    torch.testing.assert_close(draw(**m.sample_defaults()), draw(), rtol=0, atol=0)
    assert not torch.equal(draw(steps=m.config.sample_steps - 1), draw())


def test_samples_do_not_depend_on_batch_size():
    m = genlab.create("edm", **SMALL).eval()
    kw = dict(sampler="edm", steps=6, S_churn=10.0)
    a = m.sample(6, generator=torch.Generator().manual_seed(1), **kw)
    b = m.sample(6, generator=torch.Generator().manual_seed(1), batch_size=2, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_class_conditional_guidance_and_label_checks():
    m = genlab.create("edm", data_shape=(2,), hidden=32, depth=2, num_classes=3).eval()
    with torch.no_grad():
        for p in m.parameters():  # an "untrained" net with zero-initialised output ignores labels
            p.add_(0.1 * torch.randn_like(p))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = m.sample(4, generator=g(), steps=3)
    guided = m.sample(4, generator=g(), steps=3, guidance=2.0)
    assert not torch.allclose(plain, guided)
    with pytest.raises(UserError, match="class labels must be in 0..2"):
        m.sample(2, generator=g(), class_labels=torch.tensor([0, 3]))
    unconditional = genlab.create("edm", **SMALL)
    with pytest.raises(UserError, match="needs a class-conditional model"):
        unconditional.sample(2, guidance=2.0)


def test_save_and_load_keeps_samples(tmp_path):
    m = genlab.create("flow", **SMALL).eval()
    m.save_pretrained(tmp_path / "f")
    m2 = Model.from_pretrained(tmp_path / "f").eval()
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert m2.name == "flow" and torch.equal(m.sample(3, generator=g()), m2.sample(3, generator=g()))


def test_per_level_unet_blocks_survive_save_and_load(tmp_path):
    m = genlab.create("edm", data_shape=(1, 8, 8), channels=8, channel_mult=(1, 2), num_res_blocks=(1, 2)).eval()
    m.save_pretrained(tmp_path / "u")
    m2 = Model.from_pretrained(tmp_path / "u").eval()
    assert m2.config.num_res_blocks == (1, 2)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(m.sample(2, generator=g(), steps=2), m2.sample(2, generator=g(), steps=2))


@pytest.mark.parametrize(
    "kw,needle",
    [(dict(sampler="magic"), "unknown sampler 'magic'"), (dict(steps=0), "steps"),
     (dict(sampler="heun", eta=0.5), "takes no option eta"), (dict(colour=1), "unknown sampling option"),
     (dict(clip_denoised=True), "has no fixed range"), (dict(clip_denoised="yes"), "must be true or false")],
)
def test_bad_sampling_options(kw, needle):
    m = genlab.create("edm", **SMALL)
    with pytest.raises(UserError, match=needle):
        m.sample(2, **kw)


@pytest.mark.parametrize(
    "kw,needle",
    [(dict(schedule="cosmic"), "schedule='cosmic'"), (dict(sigma_min=5.0, sigma_max=1.0), "sigma_min"),
     (dict(sampler="nope"), "unknown sampler"), (dict(noise_level="discrete_t"), "needs schedule=vp"),
     (dict(clip_denoised=True), "clamps to the image range")],
)
def test_bad_model_config(kw, needle):
    with pytest.raises(UserError, match=needle):
        genlab.create("edm", **SMALL, **kw)


def test_image_model_log_prob_in_bits_per_dim_range():
    torch.manual_seed(0)
    m = genlab.create("edm", data_shape=(1, 8, 8), bins=17, channels=16, channel_mult=(1, 2), num_res_blocks=1).eval()
    x = torch.randint(0, 17, (2, 1, 8, 8)).float() / 8 - 1
    lp = m.log_prob(x, generator=torch.Generator().manual_seed(0), steps=8)
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    assert (lp < 0).all()  # a probability of discrete data


def test_clip_denoised_clamps_every_denoised_estimate(monkeypatch):
    """An untrained eps-network's D leaves [-1, 1] at high sigma; clipped, every D the sampler receives
    is inside it and the samples differ; the config default and the per-call option agree."""
    import genlab.diffusion.model as diffusion_model

    torch.manual_seed(0)
    m = genlab.create("ddim", data_shape=(1, 8, 8), channels=8, channel_mult=(1,), num_res_blocks=1).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    received: list[torch.Tensor] = []

    class Recording(diffusion_model.NFECounter):  # what the sampler gets back from each D call
        def __call__(self, x, sigma, **kw):
            received.append(super().__call__(x, sigma, **kw))
            return received[-1]

    monkeypatch.setattr(diffusion_model, "NFECounter", Recording)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = m.sample(3, generator=g(), steps=5)
    assert max(d.abs().max() for d in received) > 1.5
    received.clear()
    clipped = m.sample(3, generator=g(), steps=5, clip_denoised=True)
    assert len(received) == 5 and max(d.abs().max() for d in received) <= 1
    assert clipped.abs().max() <= 1 and (plain - clipped).abs().max() > 0.1
    m.config.clip_denoised = True
    assert torch.equal(m.sample(3, generator=g(), steps=5), clipped)
    assert torch.equal(m.sample(3, generator=g(), steps=5, clip_denoised=False), plain)
