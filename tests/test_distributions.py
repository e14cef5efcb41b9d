import math

import pytest
import torch

from genlab.nn.distributions import discretized_logistic_log_prob, gaussian_log_prob


@pytest.mark.parametrize("bins", [2, 17, 256])
def test_discretized_logistic_sums_to_one_over_all_levels(bins):
    levels = torch.arange(bins, dtype=torch.float64) * 2 / (bins - 1) - 1
    mean = torch.tensor([-1.3, -0.2, 0.0, 0.7, 1.5], dtype=torch.float64)[:, None]
    for log_scale in (-6.0, -2.0, 0.0, 1.0):
        lp = discretized_logistic_log_prob(levels[None], mean, torch.full_like(mean, log_scale), bins)
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-9)


def test_discretized_logistic_interior_bin_is_cdf_difference():
    x, mean, log_s, bins = torch.tensor([0.2]), torch.tensor([0.1]), torch.tensor([-1.0]), 256
    half = 1 / 255
    s = math.exp(-1.0)
    expected = torch.sigmoid(torch.tensor((0.2 + half - 0.1) / s)) - torch.sigmoid(torch.tensor((0.2 - half - 0.1) / s))
    torch.testing.assert_close(discretized_logistic_log_prob(x, mean, log_s, bins), expected.log().reshape(1))


def test_gaussian_log_prob_matches_torch():
    x, mean, log_s = torch.randn(10), torch.randn(10), torch.randn(10)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_s), torch.distributions.Normal(mean, log_s.exp()).log_prob(x))
