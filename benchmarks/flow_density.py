"""Density estimation on 2-D toys across families: flows' exact likelihood, the VAE's ELBO, diffusion's PF-ODE.

Run with ``python benchmarks/flow_density.py``; writes ``benchmarks/results/flow_density.md`` and
``flow_density.png`` (density heat maps side by side).

Every model trains on the same data for the same wall-clock budget (the cosine schedule follows
it) with the same trainer settings, then its test log-likelihood (nats per point, mean +- standard
error over the test points) is measured on the same test points: exact for realnvp / glow / maf /
nsf, a lower bound for the VAE (ELBO, one posterior draw per point), the probability-flow ODE
(exact divergence, 64 Heun steps) for the ``flow`` and ``edm`` diffusion models. Where the true
density is known it is the ceiling row: ring8 is a Gaussian mixture; checkerboard is uniform on 8
unit squares (log 1/8).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-flow-density-"))

import genlab  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.toy import true_log_likelihood  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402

from machine import Machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOYS = ("moons", "ring8", "checkerboard", "swissroll")
MODELS = {  # row label -> (registered model, overrides, what its number is)
    "realnvp": ("realnvp", {}, "exact"),
    "glow": ("glow", {}, "exact"),
    "maf": ("maf", {}, "exact"),
    "nsf": ("nsf", {}, "exact"),
    "vae": ("vae", dict(latent_dim=2), "ELBO (bound)"),
    "flow (diffusion)": ("flow", dict(hidden=256, depth=4), "PF-ODE"),
    "edm (diffusion)": ("edm", dict(hidden=256, depth=4), "PF-ODE"),
}
BUDGET, TEST, GRID = 30.0, 1000, 48
TRAIN = dict(batch_size=256, lr=1e-3, warmup=100)


def true_ll(name: str, x: torch.Tensor) -> float | None:
    if name == "ring8":
        return true_log_likelihood(x, name)
    if name == "checkerboard":
        return math.log(1 / 8)  # uniform on 8 unit squares of [-2, 2]^2
    return None


def run(label: str, data, budget: float, out: Path) -> dict:
    name, overrides, _ = MODELS[label]
    torch.manual_seed(0)
    model = genlab.create(name, data=data, num_classes=0, **overrides)
    cfg = TrainConfig(steps=10**9, time_budget=budget, seed=0, ckpt_every=10**9, log_every=200, eval_examples=256,
                      num_samples=16, **TRAIN)
    trainer = Trainer(model, data, cfg, out)
    trainer.show_progress = False
    done = trainer.fit()
    m = trainer.ema.model.eval()
    x = data.test.x[:TEST]
    t0 = time.perf_counter()
    lp = torch.cat([m.log_prob(part, generator=torch.Generator().manual_seed(0)) for part in x.split(500)])
    seconds = time.perf_counter() - t0
    return dict(model=m, steps=done["steps"], ll=lp.mean().item(), se=lp.std().item() / math.sqrt(len(lp)),
                eval_s=seconds, params=sum(p.numel() for p in m.parameters()))


def grid_for(x: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    lo, hi = x.quantile(0.001, dim=0) - 0.3, x.quantile(0.999, dim=0) + 0.3
    gx, gy = torch.linspace(lo[0], hi[0], GRID), torch.linspace(lo[1], hi[1], GRID)
    pts = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).view(-1, 2)
    return pts, (lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item())


def picture(maps: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = list(maps), list(next(iter(maps.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 2.0 * len(rows)), dpi=100, squeeze=False)
    for i, toy in enumerate(rows):
        for j, label in enumerate(cols):
            ax, (img, extent) = axes[i][j], maps[toy][label]
            if label == "data":
                ax.hist2d(img[:, 0].numpy(), img[:, 1].numpy(), bins=GRID, range=[extent[:2], extent[2:]], cmap="viridis")
            else:
                ax.imshow(img, origin="lower", extent=extent, cmap="viridis", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(toy, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds of training per model and toy")
    p.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine, work = Machine(), Path(tempfile.mkdtemp(prefix="flow-density-"))
    started = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    maps: dict[str, dict] = {}
    for toy in args.toys:
        data = load_dataset(toy)
        pts, extent = grid_for(data.test.x)
        maps[toy] = {"data": (data.test.x, extent)}
        results[toy] = {}
        for label in args.models:
            r = run(label, data, args.budget, work / f"{toy}-{label}".replace(" ", "_"))
            with torch.no_grad():
                dens = torch.cat([r["model"].log_prob(part, generator=torch.Generator().manual_seed(0))
                                  for part in pts.split(1024)]).exp().view(GRID, GRID)
            maps[toy][label] = (dens, extent)
            del r["model"]
            results[toy][label] = r
            print(f"{toy:12s} {label:18s} ll {r['ll']:.3f} +- {r['se']:.3f}  steps {r['steps']}  eval {r['eval_s']:.1f}s",
                  flush=True)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    picture(maps, out / "flow_density.png")
    head = "| model | what | " + " | ".join(args.toys) + " | mean rank |"
    table = [head, "|---|---|" + "---:|" * (len(args.toys) + 1)]
    ranks = {label: [] for label in args.models}
    for toy in args.toys:
        order = sorted(args.models, key=lambda m: -results[toy][m]["ll"])
        for k, label in enumerate(order):
            ranks[label].append(k + 1)
    for label in args.models:
        cells = [f"{results[t][label]['ll']:.3f} +- {results[t][label]['se']:.3f}" for t in args.toys]
        table.append(f"| {label} | {MODELS[label][2]} | " + " | ".join(cells) + f" | {statistics.mean(ranks[label]):.1f} |")
    truths = [true_ll(t, load_dataset(t).test.x[:TEST]) for t in args.toys]
    table.append("| *true density* | ceiling | " + " | ".join("-" if v is None else f"{v:.3f}" for v in truths) + " | - |")
    steps = ["| model | " + " | ".join(args.toys) + " |", "|---|" + "---:|" * len(args.toys)]
    for label in args.models:
        steps.append(f"| {label} | " + " | ".join(f"{results[t][label]['steps']} / {results[t][label]['params']:,}"
                                                 for t in args.toys) + " |")
    best = {t: max(args.models, key=lambda m: results[t][m]["ll"]) for t in args.toys}
    lines = ["# Density estimation on 2-D toys: one table across families", "", machine.line(),
             f"- Each model: {args.budget:.0f} s of training per toy (one budget for all), batch {TRAIN['batch_size']}, "
             f"lr {TRAIN['lr']:g} (AdamW, warm-up {TRAIN['warmup']}, cosine), seed 0, the EMA weights; registry defaults "
             "except the VAE's 2-D latent and the diffusion MLPs (256 x 4, as the leaderboard).",
             f"- Test log-likelihood in nats per point (higher is better), mean +- standard error over {TEST:,} test "
             "points. Flows: exact. VAE: the ELBO, a lower bound. Diffusion: the probability-flow ODE likelihood "
             "(exact divergence, 64 Heun steps), exact for the ODE's own density.",
             f"- Whole run {time.perf_counter() - started:.0f} s.", "", *table, "",
             "Best per toy: " + ", ".join(f"{t} {best[t]} ({results[t][best[t]]['ll']:.3f})" for t in args.toys) + ".",
             "", "Training steps done in the budget / parameters:", "", *steps, "",
             "![density heat maps](flow_density.png)", "",
             f"Heat maps: exp(log p) on a {GRID}x{GRID} grid (VAE: exp(ELBO)); the first column is a histogram of the test data."]
    (out / "flow_density.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
