"""How long `genlab eval` takes on 10,000 generated digits, metric by metric, beside torchmetrics.

Run with ``python benchmarks/eval_speed.py``; writes ``benchmarks/results/eval_speed.md``.

1. A VAE is trained on mnist5k for a short budget and draws N generated digits (the samples
   being scored; sampling time is reported but excluded from the target).
2. Timed, each the median of REPEATS runs: the feature pass of the samples (the shipped digits28
   network), the training split's reference features (uncached), and every metric of
   ``genlab.metrics.suite.evaluate_samples`` on those features; torchmetrics' FID and KID on the
   same features (identity feature module), side by side.
3. FD of D = 2048 features (N = 10,000 per set, Gaussian, float64): ours (two symmetric
   eigendecompositions) vs the textbook ``scipy.linalg.sqrtm(S1 @ S2)`` (clean-fid, dgm-eval), with
   the relative difference of the two values as the accuracy check.

Targets: the whole evaluation of N samples excluding sampling under 60 s on 2 cores; FD at least
5x faster than scipy ``sqrtm`` at equal accuracy.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-eval-speed-"))

import genlab  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.classifier import classifier_metrics  # noqa: E402
from genlab.metrics.features import builtin, extract  # noqa: E402
from genlab.metrics.frechet import frechet_distance, frechet_report  # noqa: E402
from genlab.metrics.kid import kernel_inception_distance  # noqa: E402
from genlab.metrics.memorization import memorization  # noqa: E402
from genlab.metrics.prdc import density_coverage, precision_recall  # noqa: E402
from genlab.metrics.vendi import vendi_score  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402

N = 10_000
REPEATS = 3
VAE_BUDGET_S = 60.0
FD_DIM, FD_N = 2048, 10_000
TARGET_EVAL_S, TARGET_FD = 60.0, 5.0
KID_SUBSETS, KID_SIZE = 100, 1000  # the KID protocol (torch-fidelity, torchmetrics)
RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int = REPEATS):
    """(median seconds, last result) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


class Identity(torch.nn.Module):
    """torchmetrics' feature hook for precomputed features."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def torchmetrics_fid(fake: torch.Tensor, real: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    m = FrechetInceptionDistance(feature=Identity(fake.shape[1]), normalize=False)
    m.update(real, real=True)
    m.update(fake, real=False)
    return float(m.compute())


def torchmetrics_kid(fake: torch.Tensor, real: torch.Tensor) -> float:
    from torchmetrics.image.kid import KernelInceptionDistance

    m = KernelInceptionDistance(feature=Identity(fake.shape[1]), subsets=KID_SUBSETS, subset_size=KID_SIZE,
                                normalize=False)
    m.update(real, real=True)
    m.update(fake, real=False)
    return float(m.compute()[0])


def main() -> None:
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    vae = genlab.create("vae", data=data, channels=16, latent_dim=16)
    out = Path(tempfile.mkdtemp(prefix="eval-speed-vae-"))
    trainer = Trainer(vae, data, TrainConfig(steps=10**9, time_budget=VAE_BUDGET_S, batch_size=128, lr=2e-3,
                                             eval_examples=64), out)
    trainer.show_progress = False
    trainer.fit()
    model = trainer.ema.model
    t_sample, samples = timed(lambda: model.sample(N, generator=torch.Generator().manual_seed(0)), 1)
    net = builtin("digits28")
    rows: list[tuple[str, float]] = []
    t_feat, (fake, logits) = timed(lambda: extract(net, samples, logits=True))
    rows.append((f"features of {N:,} samples (+ logits)", t_feat))
    t_ref, (real, _) = timed(lambda: extract(net, data.train.x))
    rows.append((f"reference features, {len(data.train):,} training digits (cached after the first run)", t_ref))
    t_test, (held, held_logits) = timed(lambda: extract(net, data.test.x, logits=True))
    rows.append((f"reference features, {len(data.test):,} test digits", t_test))
    n = min(len(fake), len(real))
    g = torch.Generator().manual_seed(0)
    fake_n = fake[torch.randperm(len(fake), generator=g)[:n]]
    kid_name = f"kid ({KID_SUBSETS} subsets of {KID_SIZE:,})"
    metrics = {
        "fd (with rank report)": lambda: frechet_report(fake_n, real).fd,
        kid_name: lambda: kernel_inception_distance(fake_n, real, KID_SUBSETS, KID_SIZE).mean,
        "precision / recall (k = 3)": lambda: precision_recall(real, fake_n),
        "density / coverage (k = 5)": lambda: density_coverage(real, fake_n),
        f"vendi ({N:,} samples)": lambda: vendi_score(fake),
        f"memorization ({N:,} samples, pixel space)": lambda: memorization(samples, data.train.x, data.test.x).share,
        "classifier metrics": lambda: classifier_metrics(logits).confident,
        "floor: fd / kid / pr / dc of the test digits": lambda: (frechet_report(held, real[:len(held)]).fd,
                                                              kernel_inception_distance(held, real).mean,
                                                              precision_recall(real[:len(held)], held),
                                                              density_coverage(real[:len(held)], held),
                                                              classifier_metrics(held_logits).confident),
    }
    values = {}
    for name, fn in metrics.items():
        t, values[name] = timed(fn)
        rows.append((name, t))
    total = sum(t for _, t in rows)
    t_tm_fid, tm_fid = timed(lambda: torchmetrics_fid(fake_n.float(), real.float()))
    t_tm_kid, tm_kid = timed(lambda: torchmetrics_kid(fake_n.float(), real.float()))
    ours_fid = values["fd (with rank report)"]
    ours_kid = values[kid_name]
    t_kid = dict(rows)[kid_name]
    t_fd_plain, _ = timed(lambda: frechet_distance(fake_n, real))
    # FD at D = 2048.
    rng = np.random.default_rng(0)
    a = rng.standard_normal((FD_N, FD_DIM))
    b = rng.standard_normal((FD_N, FD_DIM)) * 1.1 + 0.05
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mu = a.mean(0) - b.mean(0)

    def textbook() -> float:
        return float(mu @ mu + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)

    from genlab.metrics.frechet import frechet_from_stats

    t_ours_big, fd_ours = timed(lambda: frechet_from_stats(a.mean(0), s1, b.mean(0), s2))
    t_scipy_big, fd_scipy = timed(textbook)
    speedup = t_scipy_big / t_ours_big
    wall = time.perf_counter() - t0
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    lines = [
        "# Evaluation speed: `genlab eval` metric by metric (CPU)", "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, Python {platform.python_version()}; "
        f"1-min load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; whole run {wall:.0f} s",
        f"- Samples: {N:,} digits from a VAE trained {trainer.step} steps ({VAE_BUDGET_S:.0f} s budget) on mnist5k; "
        f"sampling took {t_sample:.1f} s (not part of the evaluation time)",
        f"- Features: the shipped `digits28` network ({fake.shape[1]}-d pooled features); distances use "
        f"{n:,} samples against the {len(real):,} training digits (equal-sized sets); times are medians of "
        f"{REPEATS} runs",
        "", "| step | seconds |", "|---|---:|",
    ]
    lines += [f"| {name} | {t:.3f} |" for name, t in rows]
    verdict = "MET" if total < TARGET_EVAL_S else "NOT MET"
    lines += [f"| **all of the above** | **{total:.2f}** |", "",
              f"Target: the whole evaluation of {N:,} samples excluding sampling under {TARGET_EVAL_S:.0f} s: "
              f"**{verdict}** ({total:.1f} s).", "",
              "## Beside torchmetrics, on the same features", "",
              "| metric | genlab s | torchmetrics s | genlab value | torchmetrics value | relative difference |",
              "|---|---:|---:|---:|---:|---:|",
              f"| FID / FD | {t_fd_plain:.3f} | {t_tm_fid:.3f} | {ours_fid:.6g} | {tm_fid:.6g} | "
              f"{abs(ours_fid - tm_fid) / abs(tm_fid):.1e} |",
              f"| KID ({KID_SUBSETS} x {KID_SIZE:,}; different random subsets) | {t_kid:.3f} | "
              f"{t_tm_kid:.3f} | {ours_kid:.4g} | {tm_kid:.4g} | {abs(ours_kid - tm_kid) / abs(tm_kid):.1e} |",
              "", f"## FD of D = {FD_DIM} features (N = {FD_N:,} per set, float64)", "",
              "| method | seconds | FD |", "|---|---:|---:|",
              f"| genlab (eigenvalues of sqrt(S1) S2 sqrt(S1)) | {t_ours_big:.2f} | {fd_ours:.6f} |",
              f"| scipy.linalg.sqrtm(S1 @ S2) | {t_scipy_big:.2f} | {fd_scipy:.6f} |", "",
              f"Speed-up {speedup:.1f}x (target >= {TARGET_FD:.0f}x: **{'MET' if speedup >= TARGET_FD else 'NOT MET'}**); "
              f"relative difference of the two values {abs(fd_ours - fd_scipy) / abs(fd_scipy):.1e}."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
