import math

import pytest
import torch

import genlab
from genlab.errors import UserError
from genlab.model import Model


def test_image_vae_shapes_and_bits_per_dim_bound():
    torch.manual_seed(0)
    m = genlab.create("vae", data_shape=(1, 28, 28), bins=256).eval()
    x = torch.randint(0, 256, (8, 1, 28, 28)).float() / 127.5 - 1
    lp = m.log_prob(x, generator=torch.Generator().manual_seed(0))
    assert lp.shape == (8,)
    # An untrained decoder (logistic scale ~1 around ~0) spreads mass over all 256 levels: a bit
    # worse than uniform (log 256 = 5.55 nats/dim); the discrete ELBO can never exceed 0.
    nats_per_dim = -lp.mean().item() / 784
    assert math.log(256) < nats_per_dim < math.log(256) + 1.5
    assert m.sample(5, generator=torch.Generator().manual_seed(1)).shape == (5, 1, 28, 28)
    assert m.encode(x).shape == (8, 16)


def test_sampling_is_seeded_and_batch_independent():
    m = genlab.create("vae", data_shape=(2,))
    a = m.sample(6, generator=torch.Generator().manual_seed(3))
    b = m.sample(6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    first = m.sample(3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[:3], first, rtol=0, atol=1e-6)  # same noise; matmul may round differently


def test_elbo_matches_analytic_terms_for_linear_gaussian():
    """KL term equals the closed form for a diagonal Gaussian posterior."""
    m = genlab.create("vae", data_shape=(2,), latent_dim=3)
    x = torch.randn(4, 2)
    mu, logvar = m.posterior(x)
    _, kl = m.elbo_terms(x)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    torch.testing.assert_close(kl, expected, rtol=1e-5, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    m = genlab.create("vae", data_shape=(1, 8, 8), bins=17, latent_dim=4)
    with torch.no_grad():
        m.decoder.fc.bias.add_(0.5)
    m.save_pretrained(tmp_path / "m")
    m2 = Model.from_pretrained(tmp_path / "m")
    assert m2.config == m.config and m2.name == "vae"
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(m.sample(4, generator=g()), m2.sample(4, generator=g()))


def test_training_lowers_the_bound_on_2d_data():
    torch.manual_seed(0)
    m = genlab.create("vae", data_shape=(2,), latent_dim=2, hidden=64)
    x = torch.randn(512, 2) * torch.tensor([2.0, 0.3]) + 1.0
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = m.loss({"x": x}, "main")["loss"].item()
    for _ in range(200):
        loss = m.loss({"x": x}, "main")["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    nll = -m.log_prob(x, generator=torch.Generator().manual_seed(0)).mean().item()
    # The true density's entropy is 0.5 log(2 pi e)*2 + log(2 * 0.3) = 2.327 nats; the ELBO can't beat it.
    assert loss.item() < first - 0.2
    assert 2.2 < nll < 3.2


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="latent_dim=0"):
        genlab.create("vae", latent_dim=0)
    with pytest.raises(UserError, match=r"unknown model 'vea' \(did you mean 've' or 'vae'\?\)"):
        genlab.create("vea")
    with pytest.raises(UserError, match="no option steps"):
        genlab.create("vae").sample(2, steps=3)
