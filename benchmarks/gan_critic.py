"""Does the critic's W1 estimate track sample quality? WGAN's claim, checked against exact transport.

Run with ``python benchmarks/gan_critic.py``; writes ``benchmarks/results/gan_critic.md`` and
``gan_critic.png``.

``wgan-gp`` and ``wgan`` train on ``ring8`` through the trainer (``Trainer.train_step``, the same
rounds ``genlab train`` runs). Every EVERY rounds: the critic's Kantorovich-Rubinstein estimate
E_p[f] - E_q[f] on 2,000 fresh test points and 2,000 fresh samples of the current generator, and
the exact W1 between those two point sets (POT ``emd2``, Euclidean cost). Reported: Pearson and
Spearman correlation of the two series over training, and the estimate / exact ratio at the end
(WGAN-GP's soft penalty lets the critic's gradient norm exceed 1; weight clipping bounds the
critic's Lipschitz constant by an unknown factor, so WGAN's estimate is only proportional to W1).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import ot
import torch
from scipy.stats import pearsonr, spearmanr

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-gan-critic-"))

import genlab  # noqa: E402
import genlab.model  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402

from machine import Machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS, EVERY, POINTS, WIDTH, LR_SCALE, SEED = 1500, 50, 2000, 256, 5.0, 0
GP_TOY, CLIP = 0.1, genlab.model.config_fields("wgan")["clip"]
MODELS = {f"wgan-gp (lambda {GP_TOY:g})": ("wgan-gp", dict(gp=GP_TOY)), f"wgan (clipping {CLIP:g})": ("wgan", {})}


def track(label: str, data, rounds: int, out: Path) -> dict[str, np.ndarray]:
    name, overrides = MODELS[label]
    torch.manual_seed(SEED)
    lr = genlab.model.config_fields(name)["lr"] * LR_SCALE
    model = genlab.create(name, data=data, num_classes=0, hidden=WIDTH, lr=lr, **overrides)
    trainer = Trainer(model, data, TrainConfig(steps=rounds, batch_size=256, seed=SEED), out)
    g = torch.Generator().manual_seed(SEED)
    steps, estimate, exact = [], [], []
    for r in range(rounds + 1):
        if r % EVERY == 0:
            model.eval()
            with torch.no_grad():
                real = data.test.x[torch.randperm(len(data.test.x), generator=g)[:POINTS]]
                fake = model.generator(torch.randn(POINTS, model.config.latent_dim, generator=g))
                estimate.append((model.critic(real).mean() - model.critic(fake).mean()).item())
            cost = ot.dist(real.double().numpy(), fake.double().numpy(), metric="euclidean")
            exact.append(float(ot.emd2(ot.unif(POINTS), ot.unif(POINTS), cost, numItermax=10**7)))
            steps.append(r)
        if r < rounds:
            trainer.train_step()
    return dict(steps=np.array(steps), estimate=np.array(estimate), exact=np.array(exact))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    machine, work, data = Machine(), Path(tempfile.mkdtemp(prefix="gan-critic-")), load_dataset("ring8")
    rows, series = [], {}
    for label in MODELS:
        s = series[label] = track(label, data, args.rounds, work / label.split()[0])
        skip = s["steps"] >= 100  # after warm-up: the first rounds' critic has not yet fitted anything
        r, rho = pearsonr(s["estimate"][skip], s["exact"][skip])[0], spearmanr(s["estimate"][skip], s["exact"][skip])[0]
        rows.append(f"| {label} | {r:.3f} | {rho:.3f} | {s['exact'][0]:.3f} -> {s['exact'][-1]:.3f} | "
                    f"{s['estimate'][-1]:.3f} | {s['estimate'][-1] / s['exact'][-1]:.3f} |")
        print(rows[-1], flush=True)
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 3.8), dpi=110, squeeze=False)
    for ax, (label, s) in zip(axes[0], series.items()):
        ax.plot(s["steps"], s["exact"], label="exact W1 (POT)", c="k")
        twin = ax.twinx()
        twin.plot(s["steps"], s["estimate"], label="critic estimate E_p f - E_q f", c="C1")
        ax.set_xlabel("generator steps")
        ax.set_ylabel("exact W1 (generator samples vs data)")
        twin.set_ylabel("critic estimate", color="C1")
        ax.set_title(label)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "gan_critic.png")
    lines = ["# Critic estimate vs exact W1 over training (WGAN's claim: the critic loss tracks quality)", "",
             machine.line(),
             f"- ring8, {args.rounds} rounds (each preset's n_critic critic updates, then one generator update), batch 256, "
             f"3 x {WIDTH} ReLU MLPs, each preset's optimizer at {LR_SCALE:g}x its lr; every {EVERY} rounds both quantities "
             f"on {POINTS:,} fresh test points and {POINTS:,} fresh samples of the live generator; correlations over "
             "the rounds >= 100.", "",
             "| model | Pearson r | Spearman rho | exact W1 first -> last | critic estimate last | estimate / exact |",
             "|---|---:|---:|---:|---:|---:|", *rows, "", "![critic vs W1](gan_critic.png)"]
    (out / "gan_critic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
