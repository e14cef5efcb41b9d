"""Built-in data sets, their canonical splits, the toy geometry, and stratified_split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.data import list_datasets, load_dataset, stratified_split, toy_modes
from genlab.errors import UserError

ALL = ["checkerboard", "digits", "grid25", "mnist5k", "moons", "ring8", "stacked-mnist5k", "swissroll"]


def counts(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y, minlength=k).tolist()


def test_list_datasets() -> None:
    assert list_datasets() == ALL


def test_mnist5k_shapes_range_split_and_shuffle() -> None:
    s = load_dataset("mnist5k")
    assert s.train.x.shape == (4500, 1, 28, 28) and s.test.x.shape == (500, 1, 28, 28)
    assert s.train.x.dtype == torch.float32 and s.train.bins == 256
    assert s.train.classes == [str(d) for d in range(10)]
    assert s.train.x.min().item() == -1.0 and s.train.x.max().item() == 1.0
    levels = (s.train.x + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert counts(s.train.y, 10) == [450] * 10 and counts(s.test.y, 10) == [50] * 10
    assert not bool((s.train.y[1:] >= s.train.y[:-1]).all())  # shuffled, not label-sorted
    assert s.train.y[:100].unique().numel() == 10
    rows = {r.numpy().tobytes() for r in torch.cat([s.train.x, s.test.x]).flatten(1)}
    assert len(rows) == 5000  # the two parts are disjoint
    again = load_dataset("mnist5k")
    assert torch.equal(again.train.x, s.train.x) and torch.equal(again.test.y, s.test.y)


def test_stacked_mnist_channels_are_digits_of_the_same_split_and_label_the_mode() -> None:
    base, s = load_dataset("mnist5k"), load_dataset("stacked-mnist5k")
    assert s.train.x.shape == (10_000, 3, 28, 28) and s.test.x.shape == (2_000, 3, 28, 28) and s.train.bins == 256
    for split, digits in ((s.train, base.train), (s.test, base.test)):
        for i in (0, 17):
            for c, place in enumerate((100, 10, 1)):
                match = (digits.x[:, 0] == split.x[i, c]).flatten(1).all(dim=1).nonzero().flatten()
                assert len(match) >= 1 and (digits.y[match] == split.y[i] // place % 10).all()
    modes = torch.bincount(s.train.y, minlength=1000)
    assert (modes > 0).sum() == 1000 and modes.max() < 30  # all 1,000 modes, roughly uniform (mean 10)
    assert torch.equal(load_dataset("stacked-mnist5k").train.x[:4], s.train.x[:4])  # fixed seed


def test_mnist5k_resized_stays_on_the_8bit_grid() -> None:
    s = load_dataset("mnist5k", image_size=14)
    assert s.train.x.shape == (4500, 1, 14, 14) and s.test.x.shape == (500, 1, 14, 14)
    levels = (s.test.x + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert s.test.x.min().item() >= -1.0 and s.test.x.max().item() <= 1.0
    assert s.test.x.std().item() > 0.3


def test_digits() -> None:
    s = load_dataset("digits")
    assert s.train.x.shape == (1617, 1, 8, 8) and s.test.x.shape == (180, 1, 8, 8)
    assert s.train.bins == 17 and s.train.x.min().item() == -1.0 and s.train.x.max().item() == 1.0
    levels = (s.train.x + 1) * 8
    assert torch.equal(levels, levels.round())
    # sklearn's class sizes [178 182 177 183 181 182 181 179 174 180]; 180 test by largest remainder
    assert counts(s.test.y, 10) == [18] * 10
    assert counts(s.train.y, 10) == [160, 164, 159, 165, 163, 164, 163, 161, 156, 162]
    again = load_dataset("digits")
    assert torch.equal(again.test.x, s.test.x)


@pytest.mark.parametrize("name,k", [("ring8", 8), ("grid25", 25)])
def test_mixture_toys_geometry(name: str, k: int) -> None:
    s = load_dataset(name)
    centers, std = toy_modes(name)
    assert centers.shape == (k, 2)
    assert len(s.train) == 20000 and len(s.test) == 5000 and s.train.bins == 0
    assert s.train.classes == [f"mode{i}" for i in range(k)]
    for part in (s.train, s.test):
        x = part.x.numpy()
        d = np.linalg.norm(x[:, None] - centers[None], axis=2)
        assert np.array_equal(d.argmin(1), part.y.numpy())  # label = nearest mode
        assert d.min(1).max() < 6 * std
        assert min(counts(part.y, k)) > 0.5 * len(part) / k  # every mode well populated
    assert np.allclose(
        np.linalg.norm(centers, axis=1).max(), 2 / 1.414 if k == 8 else 4 * 2**0.5 / 2.828
    )


def test_ring8_radius_and_grid_spacing() -> None:
    x = load_dataset("ring8").train.x
    r = x.norm(dim=1)
    assert (
        abs(r.mean().item() - 2 / 1.414) < 1e-3
        and (r - 2 / 1.414).abs().max().item() < 6 * 0.02 / 1.414
    )
    centers, std = toy_modes("grid25")
    assert std == pytest.approx(0.05 / 2.828)
    assert np.allclose(np.unique(centers[:, 0]), np.array([-4, -2, 0, 2, 4]) / 2.828)


def test_other_toys() -> None:
    moons = load_dataset("moons")
    assert moons.train.classes == ["upper", "lower"] and counts(moons.test.y, 2) == [2500, 2500]
    assert moons.train.x.mean(0).abs().max().item() < 0.05
    assert 0.8 < moons.train.x.var(0).mean().item() < 1.2
    board = load_dataset("checkerboard")
    assert board.train.y is None and board.train.classes == []
    x = torch.cat([board.train.x, board.test.x])
    assert x.abs().max().item() <= 2.0
    assert bool(((x.floor().sum(1) % 2) == 0).all())  # only the "black" squares are filled
    assert torch.histc(x[:, 0], bins=4, min=-2, max=2).min().item() > 5500
    roll = load_dataset("swissroll")
    assert roll.train.x.shape == (20000, 2) and roll.train.y is None
    r = roll.train.x.norm(dim=1)
    assert 0.5 < r.min().item() and r.max().item() < 3.3
    assert torch.equal(load_dataset("swissroll").test.x, roll.test.x)


def test_builtin_errors() -> None:
    with pytest.raises(UserError, match=r"'mnist'.*did you mean 'mnist5k'.*digits"):
        load_dataset("mnist")
    with pytest.raises(UserError, match=r"--image-size.*'ring8'"):
        load_dataset("ring8", image_size=8)
    with pytest.raises(UserError, match="not a Gaussian mixture"):
        toy_modes("moons")
    with pytest.raises(UserError, match="positive"):
        load_dataset("digits", image_size=0)


def test_stratified_split_partitions_and_covers_classes() -> None:
    labels = np.repeat(np.arange(5), [2, 3, 10, 1, 40])
    train, test = stratified_split(len(labels), labels, 0.1, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(56))
    # round(5.6) = 6 by largest remainder, +1 so the class of 2 also has a test example
    assert np.bincount(labels[test], minlength=5).tolist() == [1, 1, 1, 0, 4]
    assert np.bincount(labels[train], minlength=5).tolist() == [1, 2, 9, 1, 36]
    again = stratified_split(len(labels), labels, 0.1, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    other = stratified_split(len(labels), labels, 0.1, seed=4)
    assert not np.array_equal(other[1], test)


def test_stratified_split_small_and_unlabelled() -> None:
    train, test = stratified_split(2, None, 0.1, seed=0)
    assert len(train) == 1 and len(test) == 1
    train, test = stratified_split(3, np.array([0, 1, 2]), 0.1, seed=0)
    assert len(test) == 1 and len(train) == 2
    train, test = stratified_split(100, None, 0.25, seed=0)
    assert len(test) == 25 and len(set(train) | set(test)) == 100
    with pytest.raises(ValueError):
        stratified_split(10, None, 1.0, seed=0)
