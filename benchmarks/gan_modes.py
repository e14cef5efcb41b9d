"""Mode coverage of the adversarial family on 2-D toys, in the form of VEEGAN's Table 1.

Run with ``python benchmarks/gan_modes.py``; writes ``benchmarks/results/gan_modes.md`` and
``gan_modes.png`` (seed-0 samples of every model on both toys).

``ring8`` and ``grid25`` (gan_toy geometry), 5 seeds each, the same wall-clock budget for every
model (the cosine schedule follows it), unconditional. Scored on 2,500 samples of the EMA
generator with VEEGAN's protocol (``genlab.metrics.toy``): a sample is high quality within 3
standard deviations of its nearest mode, a mode is covered when it has a high-quality sample.
Each preset's optimizer at LR_SCALE x its learning rate. Networks: gan_toy.py's 3-layer ReLU MLPs at WIDTH units (gan_toy: 512; halved so that the CPU budget
buys ~3x more updates); WGAN-GP uses gan_toy's toy penalty lambda = 0.1 (10 is for images).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-gan-modes-"))

import genlab  # noqa: E402
import genlab.model  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.toy import toy_mode_coverage  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402

from machine import Machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, BATCH, SAMPLES, SEEDS, BUDGET = 256, 256, 2500, 5, 90.0
GP_TOY = 0.1  # gan_toy.py's penalty weight on its 2-D toys
LR_SCALE = 5.0  # every preset's own lr x 5: the CPU budget buys ~1% of gan_toy's 100k generator steps
MODELS = {  # row label -> (registered model, overrides)
    "gan (minimax)": ("gan", dict(loss="minimax")),
    "gan (non-saturating)": ("gan", {}),
    "wgan (clipping)": ("wgan", {}),
    f"wgan-gp (lambda {GP_TOY:g})": ("wgan-gp", dict(gp=GP_TOY)),
    "r3gan (RpGAN + R1 + R2)": ("r3gan", {}),
}
VEEGAN = {"ring8": {"GAN": (1.0, 99.3), "Unrolled GAN": (7.6, 35.6), "VEEGAN": (8.0, 52.9)},
          "grid25": {"GAN": (3.3, 0.5), "Unrolled GAN": (23.6, 16.0), "VEEGAN": (24.6, 40.0)}}


def run(label: str, data_name: str, splits, seed: int, budget: float, out: Path) -> dict:
    name, overrides = MODELS[label]
    torch.manual_seed(seed)
    lr = genlab.model.config_fields(name)["lr"] * LR_SCALE
    model = genlab.create(name, data=splits, num_classes=0, hidden=WIDTH, lr=lr, **overrides)
    cfg = TrainConfig(steps=10**9, time_budget=budget, batch_size=BATCH, seed=seed, ckpt_every=10**9, log_every=100,
                      eval_examples=256, num_samples=16)
    trainer = Trainer(model, splits, cfg, out)
    trainer.show_progress = False
    done = trainer.fit()
    x = trainer.ema.model.sample(SAMPLES, generator=torch.Generator().manual_seed(seed))
    cover = toy_mode_coverage(x, data_name)
    return dict(modes=cover.modes, hq=100 * cover.high_quality, steps=done["steps"], x=x)


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"


def picture(samples: dict, path: Path, splits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(samples)
    cols = list(samples[rows[0]])
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.5 * len(cols), 2.6 * len(rows)), dpi=100, squeeze=False)
    for i, data_name in enumerate(rows):
        ref = splits[data_name].test.x[:2000]
        for j, label in enumerate(cols):
            ax, x = axes[i][j], samples[data_name][label]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.8")
            ax.scatter(x[:, 0], x[:, 1], s=1, c="C0", alpha=0.5)
            ax.set_xlim(-2.2, 2.2)
            ax.set_ylim(-2.2, 2.2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}\n{data_name}, seed 0", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds of training per run")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine, work = Machine(), Path(tempfile.mkdtemp(prefix="gan-modes-"))
    splits = {d: load_dataset(d) for d in ("ring8", "grid25")}
    lines, samples = [], {d: {} for d in splits}
    table = ["| data | model | modes covered | high-quality % | generator steps (median) |", "|---|---|---:|---:|---:|"]
    best = {}
    for data_name, data in splits.items():
        for label in args.models:
            runs = [run(label, data_name, data, s, args.budget, work / f"{data_name}-{label}-{s}".replace(" ", "_"))
                    for s in range(args.seeds)]
            samples[data_name][label] = runs[0]["x"]
            modes = [r["modes"] for r in runs]
            table.append(f"| {data_name} | {label} | {mean_std(modes)} | {mean_std([r['hq'] for r in runs])} | "
                         f"{statistics.median(r['steps'] for r in runs):.0f} |")
            best[data_name] = max(best.get(data_name, 0.0), statistics.mean(modes))
            print(table[-1], "per seed:", modes, flush=True)
        for ref, (m, hq) in VEEGAN[data_name].items():
            table.append(f"| {data_name} | *VEEGAN Table 1: {ref}* | {m} | {hq} | - |")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    picture(samples, out / "gan_modes.png", splits)
    lines = ["# GAN mode coverage on 2-D toys (VEEGAN Table 1 protocol)", "", machine.line(),
             f"- Each model: {args.budget:.0f} s of training per run (one budget for all), batch {BATCH}, "
             f"{args.seeds} seeds (mean +- std over seeds), unconditional, 3 x {WIDTH} ReLU MLPs (gan_toy.py: 3 x 512), "
             f"latent 64, each preset's own optimizer at {LR_SCALE:g}x its lr (gan_toy trains far longer: see the steps column); {SAMPLES} samples of the EMA generator per run. High quality: "
             "within 3 std of the nearest mode; a mode is covered with >= 1 high-quality sample.",
             f"- WGAN-GP with gan_toy's toy lambda {GP_TOY:g}; r3gan's gamma from genlab's data-scale rule (docs/gan.md).", "",
             *table, "",
             f"Best mean coverage: ring8 {best.get('ring8', 0):.1f} / 8, grid25 {best.get('grid25', 0):.1f} / 25 "
             "(target: >= 24 / 25 on grid25). VEEGAN rows are the paper's numbers (its budget, not ours), for the form.",
             "", "![seed-0 samples](gan_modes.png)"]
    (out / "gan_modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
