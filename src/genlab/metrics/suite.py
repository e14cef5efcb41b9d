"""Every sample-set metric from one feature pass, for any family's samples.

``evaluate_samples(samples, splits, extractor, metrics)`` extracts the samples' features once and
feeds them to every requested metric against the training split's cached reference features
(:func:`reference_features`), with as many training examples as samples (a seeded subset when
there are more); image samples are clipped to the data range [-1, 1]. Beside each distance it reports the *floor*: the same metric for the held-out
test split (min(n, test size) examples against as many training examples), i.e. what real unseen
data scores, so a number can be read without a paper.

Metric names (``--metrics``): ``fd`` Frechet distance, ``kid``, ``pr`` precision / recall
(k = 3), ``dc`` density / coverage (k = 5), ``vendi``, ``memo`` memorization (images), ``cls``
classifier metrics (extractors with logits), ``modes`` modes covered and high-quality share,
``w2`` exact W1 / W2, sliced W2 and MMD, ``ll`` log-likelihood under the true density (the last
three for ring8 / grid25, ``w2`` for any 2-D data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from genlab.data.dataset import Dataset, Splits
from genlab.data.toys import MIXTURES
from genlab.errors import UserError
from genlab.metrics.classifier import classifier_metrics
from genlab.metrics.features import FeatureExtractor, data_fingerprint, extract, genlab_home
from genlab.metrics.frechet import frechet_report
from genlab.metrics.kid import kernel_inception_distance
from genlab.metrics.memorization import Memorization, memorization
from genlab.metrics.prdc import density_coverage, precision_recall
from genlab.metrics.toy import mmd, sliced_wasserstein, toy_mode_coverage, true_log_likelihood, wasserstein
from genlab.metrics.vendi import vendi_score

SAMPLE_METRICS = ("fd", "kid", "pr", "dc", "vendi", "memo", "cls", "modes", "w2", "ll")
MIN_SAMPLES = {"fd": 2, "kid": 2, "pr": 4, "dc": 6, "vendi": 2, "memo": 1, "cls": 1, "modes": 1, "w2": 2, "ll": 1}
EXACT_OT_POINTS = 5000  # exact W1 / W2 on at most this many points per side


def default_metrics(data: Dataset, extractor: FeatureExtractor) -> list[str]:
    """What applies to this data: distances for all, memorization for images, classifier metrics
    where the extractor has logits, exact 2-D metrics for 2-D data."""
    out = ["fd", "kid", "pr", "dc", "vendi"]
    if data.kind == "image":
        out.append("memo")
        if extractor.logits(data.x[:1]) is not None:
            out.append("cls")
    if data.shape == (2,):
        out.append("w2")
        if data.name in MIXTURES:
            out += ["modes", "ll"]
    return out


def check_metrics(names: Sequence[str], data: Dataset, extractor: FeatureExtractor, n: int) -> list[str]:
    """Validate metric names against the data and the sample count (before any sampling)."""
    names = list(dict.fromkeys(names))
    unknown = [m for m in names if m not in SAMPLE_METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(SAMPLE_METRICS)} (and nll)")
    for m in names:
        if n < MIN_SAMPLES[m]:
            raise UserError(f"metric {m} needs at least {MIN_SAMPLES[m]} samples, got -n {n}")
    if "memo" in names and data.kind != "image":
        raise UserError("memo (memorization) applies to images; this data holds vectors")
    if "cls" in names and extractor.logits(data.x[:1]) is None:
        raise UserError(f"cls needs a feature network with a classifier head; {extractor.name!r} has none")
    if ("modes" in names or "ll" in names) and data.name not in MIXTURES:
        raise UserError(f"modes and ll need a known mixture ({', '.join(MIXTURES)}), not {data.name!r}")
    if "w2" in names and data.shape != (2,):
        raise UserError(f"w2 (exact optimal transport) is for 2-D data, not examples of shape {data.shape}")
    return names


def reference_features(extractor: FeatureExtractor, data: Dataset, split: str, *, cache: bool = True,
                       show_progress: bool = False) -> tuple[Tensor, Tensor | None]:
    """Features (and logits) of a data split, cached as .npz keyed by extractor hash, data and count."""
    key = f"{extractor.hash}-{data_fingerprint(data.x)}-{split}-{len(data)}"
    path = genlab_home() / "reference" / f"{key}.npz"
    if cache and path.is_file():
        stored = np.load(path)
        logits = torch.from_numpy(stored["logits"]) if "logits" in stored else None
        return torch.from_numpy(stored["features"]), logits
    feats, logits = extract(extractor, data.x, logits=True, show_progress=show_progress, desc=f"features {split}")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        arrays = {"features": feats.numpy()} | ({"logits": logits.numpy()} if logits is not None else {})
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return feats, logits


def _subsample(x: Tensor, n: int, seed: int = 0) -> Tensor:
    if len(x) <= n:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]


def _distances(fake: Tensor, real: Tensor, names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "fd" in names:
        r = frechet_report(fake, real)
        out.update(fd=r.fd, fd_rank=r.rank_a, fd_dim=r.dim)
        if r.warning:
            out["fd_warning"] = r.warning
    if "kid" in names:
        k = kernel_inception_distance(fake, real)
        out.update(kid=k.mean, kid_std=k.std)
    if "pr" in names:
        pr = precision_recall(real, fake)
        out.update(precision=pr.precision, recall=pr.recall)
    if "dc" in names:
        dc = density_coverage(real, fake)
        out.update(density=dc.density, coverage=dc.coverage)
    return out


def evaluate_samples(samples: Tensor, splits: Splits, extractor: FeatureExtractor, metrics: Sequence[str], *,
                     requested: Tensor | None = None, cache: bool = True,
                     show_progress: bool = False) -> tuple[dict[str, Any], Memorization | None]:
    """Metrics of ``samples`` against ``splits.train`` (see the module docstring), with floors."""
    names = check_metrics(metrics, splits.train, extractor, len(samples))
    if splits.train.kind == "image":
        samples = samples.clamp(-1.0, 1.0)  # the data range, as saving the samples as images does
    want_logits = "cls" in names
    fake, fake_logits = extract(extractor, samples, logits=want_logits, show_progress=show_progress,
                                desc="features samples")
    real, _ = reference_features(extractor, splits.train, "train", cache=cache, show_progress=show_progress)
    held, held_logits = reference_features(extractor, splits.test, "test", cache=cache, show_progress=show_progress)
    out: dict[str, Any] = {"samples": len(samples), "features": extractor.name, "feature_dim": fake.shape[1]}
    # Equal-sized sets: k-NN radii and covariance estimates depend on the count.
    n = min(len(fake), len(real))
    out.update(_distances(_subsample(fake, n), _subsample(real, n), names), reference=n)
    m = min(n, len(held))
    floor = _distances(_subsample(held, m), _subsample(real, m, seed=1), [x for x in names if x in ("fd", "kid", "pr", "dc")])
    out["floor_reference"] = m
    out.update({f"floor_{k}": v for k, v in floor.items() if not k.endswith(("_rank", "_dim", "_warning", "_std"))})
    if "vendi" in names:
        out.update(vendi=vendi_score(fake), floor_vendi=vendi_score(held))
    memo = None
    if "memo" in names:
        memo = memorization(samples, splits.train.x, splits.test.x)
        out.update(memorized=memo.share, floor_memorized=memo.test_share)
    if "cls" in names:
        c = classifier_metrics(fake_logits, requested)
        t = classifier_metrics(held_logits, splits.test.y)  # real test digits: what a perfect model scores
        for name in ("confident", "class_entropy", "class_entropy_share", "classifier_score"):
            out[name], out[f"floor_{name}"] = getattr(c, name), getattr(t, name)
        if c.conditional_accuracy is not None:
            out["conditional_accuracy"], out["floor_conditional_accuracy"] = c.conditional_accuracy, t.conditional_accuracy
    if "modes" in names:
        m = toy_mode_coverage(samples, splits.train.name)
        t = toy_mode_coverage(splits.test.x, splits.test.name)
        out.update(modes=m.modes, high_quality=m.high_quality, floor_modes=t.modes, floor_high_quality=t.high_quality)
    if "w2" in names:
        x, ref = _subsample(samples, EXACT_OT_POINTS), _subsample(splits.test.x, EXACT_OT_POINTS)
        out.update(w1=wasserstein(x, ref, p=1), w2=wasserstein(x, ref, p=2), sliced_w2=sliced_wasserstein(x, ref),
                   mmd=mmd(x, ref), ot_points=len(x))
        half = _subsample(splits.train.x, len(ref), seed=1)
        out["floor_w2"] = wasserstein(half, ref, p=2)
    if "ll" in names:
        out.update(true_ll=true_log_likelihood(samples, splits.train.name),
                   floor_true_ll=true_log_likelihood(splits.test.x, splits.test.name))
    return out, memo


def save_memorization_pairs(memo: Memorization, samples: Tensor, train: Tensor, path: Path, k: int = 8) -> None:
    """The ``k`` samples with the smallest d/r above their nearest training example (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = torch.argsort(memo.distances / memo.scales)[:k].tolist()
    fig, axes = plt.subplots(2, len(order), figsize=(1.3 * len(order), 3.0), dpi=100, squeeze=False)
    for col, i in enumerate(order):
        for row, img in enumerate((samples[i], train[memo.nearest[i]])):
            ax = axes[row, col]
            pic = ((img.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        q = float(memo.distances[i] / memo.scales[i])
        flag = " COPY" if q < memo.ratio else ""
        axes[0, col].set_title(f"d/r={q:.2f}{flag}", fontsize=8)
    axes[0, 0].set_ylabel("sample", fontsize=8)
    axes[1, 0].set_ylabel("nearest train", fontsize=8)
    fig.suptitle(f"the {len(order)} samples closest to a training image, relative to that image's own nearest "
                 f"training neighbour r; memorized if d/r < {memo.ratio:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
