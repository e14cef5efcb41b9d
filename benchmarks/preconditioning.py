"""Preconditioning at a small budget (EDM section 5): why eps-prediction samples noise on mnist5k.

The leaderboard's ddim / vp / ve rows (eps-prediction) draw noise at its mnist5k budget while edm
draws digits from the same UNet. This script trains the leaderboard's mnist5k network with the
leaderboard's settings and budget four ways, changing one thing at a time:

- ``eps``: the ddpm preset (VP schedule, uniform discrete t, eps-prediction, L_simple);
- ``v``: the same, predicting v (Salimans & Ho 2022) with its matching weight;
- ``edm precond.``: the same t distribution, EDM's preconditioning and weight (c_skip, c_out, c_in);
- ``edm``: the edm preset (EDM's preconditioning and its log-normal sigma distribution).

Per model it measures the denoising error E||D(x0 + sigma n; sigma) - x0||^2 / dims on test digits
at fixed sigmas (the same noise for every model), and FD of 500 samples with four samplers on
the model's Karras grid (its sigma_min to 80; Heun 18 steps = 35 NFE, DDIM eta 0 with and without the denoised
estimate clipped to [-1, 1], and DDPM ancestral, 50 steps each). The eps model, the ddpm preset,
is also sampled as the leaderboard and the DDPM paper sample it (the preset's own 1000 ancestral
steps on the DDPM grid), without and with the clip that Ho et al.'s sampler applies.
EDM's argument: D = x - sigma F multiplies the network's error by sigma, so an eps-network's
denoising error grows with sigma, while c_out bounds it. Writes ``results/preconditioning.md`` and
``results/preconditioning.png``.

    python benchmarks/preconditioning.py [--budget-scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import genlab  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.features import get_extractor  # noqa: E402
from genlab.metrics.suite import evaluate_samples  # noqa: E402
from genlab.report.grid import image_grid  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402
from leaderboard import DATA, SEED, UNET  # noqa: E402
from machine import Machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {  # label -> (preset, overrides): one change at a time
    "eps": ("ddpm", {}),
    "v": ("ddpm", dict(parameterization="v", weighting="v")),
    "edm precond.": ("ddpm", dict(parameterization="edm", weighting="edm")),
    "edm": ("edm", {}),
}
SIGMAS = (0.02, 0.1, 0.5, 2.0, 10.0, 40.0, 80.0)
SAMPLERS = {"heun 18 (35 NFE)": dict(sampler="heun", steps=18), "ddim 50": dict(sampler="ddim", steps=50),
            "ddim 50, clipped": dict(sampler="ddim", steps=50, clip_denoised=True),
            "ddpm 50": dict(sampler="ddpm", steps=50)}
PAPER = {"": {}, ", clipped": dict(clip_denoised=True)}  # the ddpm preset's own sampler and grid, clip off / on
GRID = dict(grid="karras")  # from the schedule's sigma_min (VP 0.01, EDM 0.002) to 80 (make_sigmas' cap)
N_SAMPLES, N_TEST = 500, 500


@torch.no_grad()
def denoising_error(model, x0: torch.Tensor, noise: torch.Tensor) -> list[float]:
    """E||D(x0 + sigma n; sigma) - x0||^2 / dims at each of SIGMAS, with the same n for every model."""
    out = []
    for s in SIGMAS:
        sigma = torch.full((len(x0),), s)
        out.append(float((model.denoiser(x0 + s * noise, sigma) - x0).square().mean()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply the time budget (smoke runs)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    machine = Machine()
    spec = DATA["mnist5k"]
    budget = spec["budget"] * args.budget_scale
    splits = load_dataset("mnist5k")
    extractor = get_extractor(None, splits.train.x)
    x0 = splits.test.x[:N_TEST].float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(SEED))
    mean_error = float((x0 - splits.train.x.float().mean(0)).square().mean())  # D = the mean training digit
    work = Path(tempfile.mkdtemp(prefix="preconditioning-"))
    rows, pictures = [], {}
    for label, (preset, overrides) in VARIANTS.items():
        torch.manual_seed(SEED)
        model = genlab.create(preset, data=splits, **UNET, **overrides)
        cfg = TrainConfig(steps=10**9, time_budget=budget, seed=SEED, eval_examples=64, ckpt_every=10**9,
                          log_every=100, num_samples=16, **spec["train"])
        trainer = Trainer(model, splits, cfg, work / label.replace(" ", "_").strip("."))
        trainer.show_progress = False
        trained = trainer.fit()
        ema = trainer.ema.model.eval()
        grid = ema.sigmas(**GRID)
        row = dict(label=label, preset=preset, overrides=overrides, steps=trained["steps"],
                   error=denoising_error(ema, x0, noise), fd={}, grid=(float(grid[-2]), float(grid[0])))
        for name, kw in SAMPLERS.items():
            x = ema.sample(N_SAMPLES, generator=torch.Generator().manual_seed(SEED), **GRID, **kw).float()
            res, _ = evaluate_samples(x, splits, extractor, ["fd"])
            row["fd"][name] = res["fd"]
            row["floor"] = res["floor_fd"]
            if name.startswith("heun"):
                pictures[label] = x
        if preset == "ddpm" and not overrides:  # the eps model as its paper samples it
            own = f"{ema.config.sampler} {ema.config.sample_steps} on the {ema.config.grid} grid"
            for suffix, kw in PAPER.items():
                x = ema.sample(N_SAMPLES, generator=torch.Generator().manual_seed(SEED), **kw).float()
                row.setdefault("paper", {})[own + suffix] = evaluate_samples(x, splits, extractor, ["fd"])[0]["fd"]
        print(label, row["steps"], "steps", {k: round(v, 2) for k, v in row["fd"].items()}, row.get("paper"), flush=True)
        rows.append(row)
    write(results, rows, pictures, mean_error, budget, machine)


def write(results: Path, rows: list[dict], pictures: dict, mean_error: float, budget: float, machine) -> None:
    fig, (ax, *img_axes) = plt.subplots(1, 1 + len(pictures), figsize=(4.2 + 2.2 * len(pictures), 3.4), dpi=100,
                                        gridspec_kw=dict(width_ratios=[1.9] + [1] * len(pictures)))
    for r in rows:
        ax.loglog(SIGMAS, r["error"], "o-", label=r["label"])
    ax.axhline(mean_error, color="0.5", ls="--", label="D = mean digit")
    ax.set_xlabel("sigma")
    ax.set_ylabel("denoising error per pixel")
    ax.legend(fontsize=7)
    for a, (label, x) in zip(img_axes, pictures.items()):
        a.imshow(image_grid(x[:25].clamp(-1, 1), nrow=5)[..., 0], cmap="gray")
        a.set_title(f"{label}, heun", fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(results / "preconditioning.png")
    plt.close(fig)

    eps, edm_pre = rows[0], next(r for r in rows if r["label"] == "edm precond.")
    edm = next(r for r in rows if r["preset"] == "edm" and not r["overrides"])
    heun = next(iter(SAMPLERS))
    hi = len(SIGMAS) - 1
    lines = [
        "# Preconditioning at a small budget: eps vs v vs EDM's c_skip / c_out (EDM section 5, mnist5k)", "",
        machine.line(),
        f"- Same UNet as the leaderboard's mnist5k diffusion rows ({', '.join(f'{k}={v}' for k, v in UNET.items())}), "
        f"same training settings ({', '.join(f'{k}={v}' for k, v in DATA['mnist5k']['train'].items())}, cosine "
        f"schedule over the budget), {budget:.0f} s of training each, seed {SEED}; the EMA weights are measured.",
        f"- Denoising error: mean over {N_TEST} test digits and their pixels of (D(x0 + sigma n; sigma) - x0)^2, "
        "one fixed n for every model. Reference: D = the mean training digit, the error of the best denoiser "
        f"that ignores its input ({mean_error:.3f}); at high sigma the ideal D approaches it.",
        f"- FD: {N_SAMPLES} samples (seed {SEED}) against as many training digits in the `digits28` features, "
        "the leaderboard's protocol; every sampler on the Karras grid (rho 7) from the schedule's sigma_min to "
        "sigma_max: " + "; ".join(f"{lo:.3g} to {hi:g} for {', '.join(r['label'] for r in rows if r['grid'] == (lo, hi))}"
                                  for lo, hi in dict.fromkeys(r["grid"] for r in rows)) + ".", "",
        "| variant | preset + options | steps | " + " | ".join(f"error at sigma {s:g}" for s in SIGMAS) + " | "
        + " | ".join(f"FD, {k}" for k in SAMPLERS) + " |",
        "|---|---|---:|" + "---:|" * (len(SIGMAS) + len(SAMPLERS)),
    ]
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["overrides"].items())
        lines.append(f"| {r['label']} | {r['preset']} {opts} | {r['steps']} | "
                     + " | ".join(f"{e:.4g}" for e in r["error"]) + " | "
                     + " | ".join(f"{v:.2f}" for v in r["fd"].values()) + " |")
    floor = ["*test digits (floor)*", "", ""] + [""] * len(SIGMAS) + [f"{rows[0]['floor']:.2f}"] * len(SAMPLERS)
    lines += ["| " + " | ".join(floor) + " |", "",
              "![denoising error and samples](preconditioning.png)", "",
              f"At sigma {SIGMAS[hi]:g} the eps-network's denoising error is {eps['error'][hi] / mean_error:.3g}x that of the "
              f"mean digit; with EDM's preconditioning and the same t distribution it is "
              f"{edm_pre['error'][hi] / mean_error:.3g}x. FD with {heun}: eps {eps['fd'][heun]:.2f}, "
              f"edm precond. {edm_pre['fd'][heun]:.2f}: eps / edm precond. = {eps['fd'][heun] / edm_pre['fd'][heun]:.3g} "
              "with only the preconditioning changed.", ""]
    paper = eps["paper"]
    (plain, fd_plain), (clipped, fd_clipped) = paper.items()
    lines += ["The eps model is the ddpm preset; sampled as the leaderboard samples it, with the preset's own "
              "sampler, and with the denoised estimate clipped to [-1, 1] at every step as Ho et al.'s sampler "
              "does (genlab's presets leave clipping off):", "",
              "| eps model sampled with | FD |", "|---|---:|",
              *(f"| {k} | {v:.2f} |" for k, v in paper.items()), "",
              f"Clipping takes the ddpm preset's FD from {fd_plain:.2f} to {fd_clipped:.2f} (unclipped / clipped = "
              f"{fd_plain / fd_clipped:.3g}); the edm preset's, {heun}: {edm['fd'][heun]:.2f}.", ""]
    (results / "preconditioning.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
