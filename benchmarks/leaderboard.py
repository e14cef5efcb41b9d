"""The cross-family leaderboard: every registered generative model, one CPU budget, the same metrics.

Run with ``python benchmarks/leaderboard.py``; writes ``benchmarks/results/leaderboard.md`` and
``leaderboard_grid25.png`` / ``leaderboard_mnist5k.png`` (samples side by side).

Every registered model that can sample is trained on ``grid25`` and on ``mnist5k`` with the same
time budget per data set (the cosine schedule follows the budget), then scored by
``genlab.metrics.suite.evaluate_samples`` on the same number of samples, seeded alike, against
the training split (the test split's scores are the floor row), and by its likelihood on the test
split where the family has one. A family registered later joins the table with no change here;
``OVERRIDES`` only sizes networks for the CPU budget.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-leaderboard-"))

import genlab  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.features import get_extractor  # noqa: E402
from genlab.metrics.memorization import RATIO  # noqa: E402
from genlab.metrics.suite import default_metrics, evaluate_samples  # noqa: E402
from genlab.registry import MODELS  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
DATA = {  # budget (s), samples scored, test examples for the likelihood, training settings
    "grid25": dict(budget=60.0, n=2000, nll=512, train=dict(batch_size=256, lr=1e-3, warmup=100)),
    "mnist5k": dict(budget=240.0, n=500, nll=64,
                    train=dict(batch_size=64, lr=2e-3, warmup=200, ema_decay=0.998, bf16="auto")),
}
UNET = dict(channels=64, channel_mult=(1, 2), num_res_blocks=1, patch_size=4)  # the make-demo network
OVERRIDES = {  # (model name or family class name, data) -> config overrides sized for the budget
    ("DiffusionModel", "grid25"): dict(hidden=256, depth=4),
    ("DiffusionModel", "mnist5k"): UNET,
    ("VAE", "mnist5k"): dict(channels=16, latent_dim=16),
    ("GAN", "grid25"): dict(hidden=256),  # benchmarks/gan_modes.py's width
    # flows: as benchmarks/flow_mnist.py (MAF: its paper's 5 MADEs of 1 x 1024)
    ("realnvp", "mnist5k"): dict(transforms=4), ("nsf", "mnist5k"): dict(transforms=4),
    ("maf", "mnist5k"): dict(hidden=1024, depth=1),
}
# GANs keep their presets' optimizers (their phases ignore the run's lr above) at this multiple of the preset's lr:
# the CPU budgets buy a small share of the references' generator steps (grid25 as benchmarks/gan_modes.py)
GAN_LR_SCALE = {"grid25": 5.0, "mnist5k": 2.5}
FAMILIES = {"DiffusionModel": "diffusion", "VAE": "autoencoder", "GAN": "adversarial", "FlowModel": "flow"}


def generative_models() -> list[str]:
    return [name for name in MODELS.names() if "sample" in MODELS.get(name)[0].capabilities()]


def run_one(name: str, data_name: str, splits, spec: dict, out: Path) -> tuple[dict, torch.Tensor]:
    cls = MODELS.get(name)[0]
    overrides = OVERRIDES.get((name, data_name), OVERRIDES.get((cls.__name__, data_name), {}))
    if cls.__name__ == "GAN":
        overrides = {"lr": genlab.model.config_fields(name)["lr"] * GAN_LR_SCALE[data_name], **overrides}
    torch.manual_seed(SEED)
    model = genlab.create(name, data=splits, **overrides)
    cfg = TrainConfig(steps=10**9, time_budget=spec["budget"], seed=SEED, eval_examples=spec["nll"],
                      ckpt_every=10**9, log_every=100, num_samples=16, **spec["train"])
    trainer = Trainer(model, splits, cfg, out / f"{data_name}-{name}")
    trainer.show_progress = False
    trained = trainer.fit()
    ema = trainer.ema.model.eval()
    classes = ema.sample_classes(spec["n"])
    kw = {} if classes is None else {"class_labels": classes}
    t0 = time.perf_counter()
    samples = ema.sample(spec["n"], generator=torch.Generator().manual_seed(SEED), **kw).float().cpu()
    sample_s = time.perf_counter() - t0
    extractor = get_extractor(None, splits.train.x)
    results, _ = evaluate_samples(samples, splits, extractor, default_metrics(splits.train, extractor),
                                  requested=classes)
    results.update(model=name, family=FAMILIES.get(cls.__name__, cls.__module__.split(".")[1]),
                   params=sum(p.numel() for p in ema.parameters()), train_s=trained["train_seconds"],
                   steps=trained["steps"], samples_per_s=spec["n"] / sample_s,
                   bits_per_dim=trained.get("bits_per_dim"), nll_examples=trained.get("test_examples"))
    return results, samples


def fmt(v, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def table(data_name: str, rows: list[dict]) -> list[str]:
    image = data_name == "mnist5k"
    extra = ["memorized", "confident", "classifier_score"] if image else ["modes", "high_quality", "w2"]
    cols = ["model", "family", "params", "train s", "steps", "FD", "KID", "precision", "recall", "density",
            "coverage", *extra, "bits/dim", "samples/s"]
    keys = ["model", "family", "params", "train_s", "steps", "fd", "kid", "precision", "recall", "density",
            "coverage", *extra, "bits_per_dim", "samples_per_s"]
    out = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
    for r in sorted(rows, key=lambda r: r["fd"]):
        out.append("| " + " | ".join(fmt(r.get(k), ",d" if k == "params" else ".4g") for k in keys) + " |")
    floor = rows[0]
    floor_row = {"model": "*test data (floor)*", "family": "", **{k: floor.get(f"floor_{k}") for k in keys[5:]}}
    out.append("| " + " | ".join(fmt(floor_row.get(k)) for k in keys) + " |")
    return out


def picture(data_name: str, samples: dict[str, torch.Tensor], splits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab.report.grid import image_grid

    names = list(samples)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.9), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names):
        x = samples[name]
        if data_name == "mnist5k":
            ax.imshow(image_grid(x[:30].clamp(-1, 1), nrow=5)[..., 0], cmap="gray")
        else:
            ref = splits.test.x[:2000]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.8")
            ax.scatter(x[:, 0], x[:, 1], s=1, c="C0")
            ax.set_xlim(-2, 2)
            ax.set_ylim(-2, 2)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=list(DATA))
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model that samples")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every time budget (smoke runs)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    models = args.models or generative_models()
    work = Path(tempfile.mkdtemp(prefix="leaderboard-runs-"))
    sections = []
    for data_name in args.data:
        spec = {**DATA[data_name], "budget": DATA[data_name]["budget"] * args.budget_scale}
        splits = load_dataset(data_name)
        rows, samples = [], {}
        for name in models:
            r, x = run_one(name, data_name, splits, spec, work)
            print(f"{data_name} {name}: FD {r['fd']:.4g}, {r['steps']} steps", flush=True)
            rows.append(r)
            samples[name] = x
        png = f"leaderboard_{data_name}.png"
        picture(data_name, samples, splits, results_dir / png)
        ref = rows[0]
        sections += [f"## {data_name}", "",
                     f"Budget {spec['budget']:.0f} s of training per model; {spec['n']:,} samples each (seed {SEED}); "
                     f"features `{ref['features']}` ({ref['feature_dim']}-d); distances against {ref['reference']:,} "
                     f"training examples, the floor row is {ref['floor_reference']:,} test examples; bits/dim on "
                     f"{spec['nll']} test examples. Sorted by FD.", "", *table(data_name, rows), "",
                     f"![samples]({png})", ""]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    head = ["# Leaderboard: every generative family, same data, same budget, same metrics (CPU)", "",
            f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads; torch "
            f"{torch.__version__}, Python {platform.python_version()}; 1-min load average before {load_before:.1f}, "
            f"after {os.getloadavg()[0]:.1f}; whole run {time.perf_counter() - t0:.0f} s",
            f"- Metrics: `genlab.metrics` (FD from a symmetric eigenproblem, KID, precision / recall, density / "
            f"coverage, memorization = share of samples {1 / RATIO:g}x closer to a training image than that image's "
            "own nearest training neighbour, classifier metrics from the feature network; on grid25 modes covered "
            "and high-quality share, exact W2 by POT; protocols in docs/evaluation.md)", ""]
    (results_dir / "leaderboard.md").write_text("\n".join(head + sections))
    print((results_dir / "leaderboard.md").read_text())


if __name__ == "__main__":
    main()
