"""Feature-space distances (FD, KID, precision/recall, density/coverage, Vendi): formulas and parity with peers.

Peers: scipy.linalg.sqrtm (textbook FD), torchmetrics (FID, KID) fed precomputed features through an
identity feature module, the ``prdc`` package (Naeem et al.'s reference code) and ``vendi_score``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.errors import UserError
from genlab.metrics import prdc as prdc_mod
from genlab.metrics.frechet import frechet_distance, frechet_from_stats, frechet_report, gaussian_stats
from genlab.metrics.kid import kernel_inception_distance
from genlab.metrics.prdc import density_coverage, precision_recall
from genlab.metrics.vendi import vendi_score

pytestmark = pytest.mark.usefixtures("one_thread")


def _sets(seed=0, n_a=300, n_b=250, d=32):
    """Two Gaussian feature sets with different means and scales."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_a, d))
    b = rng.standard_normal((n_b, d)) @ (np.eye(d) + 0.2 * rng.standard_normal((d, d))) + 0.3
    return a, b


def _textbook_fd(a, b):
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), as in the original FID code."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real


def _nuclear_fd(a, b):
    """FD with tr (S1 S2)^(1/2) = ||A_c B_c^T||_* / sqrt((N_a-1)(N_b-1)): exact also when N < D."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    nuc = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = a.mean(0) - b.mean(0)
    return diff @ diff + (ac**2).sum() / (len(a) - 1) + (bc**2).sum() / (len(b) - 1) - 2 * nuc


class _Identity(torch.nn.Module):
    """torchmetrics feature module for precomputed features: ``num_features`` skips its probe image."""

    def __init__(self, d):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


# --- Fréchet distance ---------------------------------------------------------------------------


def test_fd_matches_textbook_sqrtm_and_is_symmetric():
    a, b = _sets()
    fd = frechet_distance(a, b)
    assert isinstance(fd, float)
    assert fd == pytest.approx(_textbook_fd(a, b), rel=1e-6)
    assert fd == pytest.approx(_textbook_fd(a, b), rel=1e-12)  # what it actually achieves
    assert frechet_distance(b, a) == pytest.approx(fd, rel=1e-12)
    assert frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(
        frechet_distance(a.astype(np.float32), b), rel=1e-12
    )
    mu, cov = gaussian_stats(a)
    assert mu.dtype == cov.dtype == np.float64 and cov.shape == (32, 32)
    np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-12, atol=1e-14)
    assert frechet_from_stats(mu, cov, *gaussian_stats(b)) == pytest.approx(fd, rel=1e-12)
    assert frechet_from_stats(torch.from_numpy(mu), torch.from_numpy(cov), *gaussian_stats(b)) == pytest.approx(fd, rel=1e-12)


def test_fd_of_a_set_with_itself_is_zero():
    a, _ = _sets()
    for x in (a, 1000.0 * a + 5.0):
        scale = np.trace(np.cov(x, rowvar=False))
        assert abs(frechet_distance(x, x)) < 1e-8 * scale
    rep = frechet_report(a, a)
    assert rep.warning is None and rep.rank_a == rep.rank_b == rep.dim == 32 and (rep.n_a, rep.n_b) == (300, 300)


def test_fd_on_singular_covariances_is_finite_real_and_flagged():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((32, 64)), rng.standard_normal((100, 64)) + 0.05  # N_a < D: rank 31
    rep = frechet_report(a, b)
    assert isinstance(rep.fd, float) and np.isfinite(rep.fd)
    assert rep.fd == pytest.approx(_nuclear_fd(a, b), rel=1e-9)
    assert (rep.rank_a, rep.rank_b, rep.dim, rep.n_a, rep.n_b) == (31, 64, 64, 32, 100)
    assert "the first set has N=32 samples for D=64" in rep.warning and "rank 31" in rep.warning
    assert "the second set" not in rep.warning

    x = rng.standard_normal((200, 10))
    dup = np.hstack([x, x[:, :3]])  # 3 duplicated columns: rank 10 of 13 although N > D
    rep = frechet_report(dup, dup + 0.1)
    assert rep.fd == pytest.approx(13 * 0.1**2, rel=1e-9)
    assert (rep.rank_a, rep.rank_b, rep.dim) == (10, 10, 13)
    assert "rank-deficient (rank 10 of D=13)" in rep.warning
    assert frechet_distance(dup, dup) < 1e-8 * np.trace(np.cov(dup, rowvar=False))


def test_fid_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = _sets()
    fid = FrechetInceptionDistance(feature=_Identity(a.shape[1]))
    fid.update(torch.from_numpy(a), real=True)
    fid.update(torch.from_numpy(b), real=False)
    ref = float(fid.compute())
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-4)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)  # what it actually achieves in float64


# --- KID -----------------------------------------------------------------------------------------


def test_kid_zero_for_one_distribution_positive_for_shifted():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((500, 16)), rng.standard_normal((500, 16))
    same = kernel_inception_distance(x, y, subsets=50, subset_size=100)
    assert same.std > 0 and abs(same.mean) < 2 * same.std
    shifted = kernel_inception_distance(x, y + 0.5, subsets=50, subset_size=100)
    assert shifted.mean > 5 * shifted.std
    assert kernel_inception_distance(x, y, subsets=50, subset_size=100) == same  # seeded
    assert kernel_inception_distance(x, y, subsets=50, subset_size=100, seed=1) != same
    assert kernel_inception_distance(x[:40], y, subsets=3).std > 0  # unequal sizes: subsets of 40


def _torchmetrics_kid(a, b, subsets, subset_size):
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
        torch.manual_seed(0)
        kid = KernelInceptionDistance(feature=_Identity(a.shape[1]), subsets=subsets, subset_size=subset_size)
        kid.update(torch.from_numpy(a), real=True)
        kid.update(torch.from_numpy(b), real=False)
        mean, std = kid.compute()
    return float(mean), float(std)


def test_kid_matches_torchmetrics():
    a, b = _sets(n_a=250, n_b=250)
    # one subset of all N rows is the full-set unbiased MMD^2 for both (a permutation does not change it)
    ours = kernel_inception_distance(a, b, subsets=1, subset_size=250)
    assert ours.std == 0.0
    assert ours.mean == pytest.approx(_torchmetrics_kid(a, b, 1, 250)[0], rel=1e-10)
    # random subsets differ between the two, so compare means within 4 standard errors of their difference
    s = 200
    ours = kernel_inception_distance(a, b, subsets=s, subset_size=50)
    ref_mean, ref_std = _torchmetrics_kid(a, b, s, 50)
    assert abs(ours.mean - ref_mean) < 4 * np.sqrt((ours.std**2 + ref_std**2) / s)
    assert ours.std == pytest.approx(ref_std, rel=0.25)


# --- precision / recall, density / coverage ------------------------------------------------------


def test_prdc_matches_prdc_package_exactly(capsys):
    import prdc

    a, b = _sets(n_a=300, n_b=250, d=8)
    for k in (3, 5):
        ref = prdc.compute_prdc(real_features=a, fake_features=b, nearest_k=k)
        pr, dc = precision_recall(a, b, k=k), density_coverage(a, b, k=k)
        # same counts (1/N >> 1e-12): identical decisions for every point
        assert pr.precision == pytest.approx(ref["precision"], abs=1e-12)
        assert pr.recall == pytest.approx(ref["recall"], abs=1e-12)
        assert dc.density == pytest.approx(ref["density"], abs=1e-12)
        assert dc.coverage == pytest.approx(ref["coverage"], abs=1e-12)
        assert 0 < pr.precision < 1 and 0 < dc.coverage < 1  # a non-trivial comparison
    capsys.readouterr()  # prdc prints the set sizes


def test_prdc_of_a_set_with_itself_is_one():
    a, _ = _sets(d=8)
    for other in (a, a.copy()):
        assert precision_recall(a, other) == (1.0, 1.0)
        dc = density_coverage(a, other)
        assert dc.coverage == 1.0 and dc.density == pytest.approx(1.0, abs=1e-12)


def test_prdc_blocks_do_not_change_the_result(monkeypatch):
    a, b = _sets(n_a=120, n_b=90, d=6)
    full = precision_recall(a, b), density_coverage(a, b)
    monkeypatch.setattr(prdc_mod, "BLOCK_ELEMENTS", 200)  # 1-2 rows per block
    assert (precision_recall(torch.from_numpy(a), b), density_coverage(a, torch.from_numpy(b))) == full


# --- Vendi ---------------------------------------------------------------------------------------


def test_vendi_matches_vendi_score_package():
    from vendi_score import vendi

    rng = np.random.default_rng(3)
    for shape in ((40, 8), (10, 30)):  # d x d and n x n branches
        x = rng.standard_normal(shape) + 0.5
        ours = vendi_score(x)
        assert ours == pytest.approx(vendi.score_dual(x), rel=1e-6)
        assert ours == pytest.approx(vendi.score_X(x), rel=1e-6)
        assert ours == pytest.approx(vendi.score_dual(x), rel=1e-12)  # what it actually achieves


def test_vendi_extremes():
    assert vendi_score(np.tile([[1.0, 2.0, 3.0]], (7, 1))) == pytest.approx(1.0, abs=1e-12)  # all alike
    assert vendi_score(np.eye(5) * 3.0) == pytest.approx(5.0, rel=1e-12)  # mutually orthogonal
    assert vendi_score(np.eye(5)[:, :3].T) == pytest.approx(3.0, rel=1e-12)  # n < d


# --- user errors ---------------------------------------------------------------------------------


def test_user_errors_say_what_to_fix():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((10, 4)), rng.standard_normal((10, 5))
    with pytest.raises(UserError, match="KID needs at least 2 samples per set, got 1"):
        kernel_inception_distance(x[:1], x)
    for call in (frechet_distance, kernel_inception_distance, precision_recall, density_coverage):
        with pytest.raises(UserError, match=r"feature dimensions differ .*D=4.*D=5"):
            call(x, y)
    with pytest.raises(UserError, match=r"shape \(N, D\), got shape \(10,\)"):
        frechet_distance(x[:, 0], x)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UserError, match="NaN or inf .*row 3"):
        vendi_score(bad)
    with pytest.raises(UserError, match="at least 2 samples"):
        frechet_distance(x[:1], x)
    with pytest.raises(UserError, match="k=3 needs more than k samples in fake"):
        precision_recall(x, x[:3])
    with pytest.raises(UserError, match="k=0"):
        density_coverage(x, x, k=0)
    with pytest.raises(UserError, match="subsets=0"):
        kernel_inception_distance(x, x, subsets=0)
    with pytest.raises(UserError, match="row 2 is all zeros"):
        vendi_score(np.vstack([x[:2], np.zeros((1, 4))]))
    with pytest.raises(UserError, match="not symmetric"):
        frechet_from_stats(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(UserError, match="feature dimensions differ"):
        frechet_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(UserError, match="numeric"):
        frechet_distance(np.array([["a", "b"], ["c", "d"]]), x)
    assert issubclass(UserError, ValueError)
