"""Reflow (Liu et al. 2022): few-step Euler sampling of a 1-rectified flow vs its 2-rectified flow.

Per data set: train a ``flow`` model (1-rectified flow), draw ODE pairs (z, x0) with 100 Euler
steps, fine-tune the 1-rectified weights on the pairs (2-rectified flow; the loss uses each pair's
z instead of fresh noise), and compare W2 to held-out test points at Euler 1 / 2 / 4 / 8 / 100
steps, plus the straightness of the 100-step Euler paths. W2 = sqrt(exact OT cost, POT emd2) between
N samples (same noise seed for both models) and N test points; the floor is W2 between N train and
N test points. Writes ``benchmarks/results/reflow.md`` and ``reflow.png``.

    python benchmarks/reflow.py [--datasets moons grid25] [--train-steps 3000] [--reflow-steps 1500] [--pairs 15000]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import ot  # noqa: E402
import torch  # noqa: E402

import genlab  # noqa: E402
from genlab.data import load_dataset, toy_modes  # noqa: E402
from genlab.data.toys import MIXTURES  # noqa: E402
from genlab.diffusion.model import DiffusionModel  # noqa: E402
from genlab.diffusion.reflow import Straightness, reflow_splits, straightness  # noqa: E402
from genlab.train.config import TrainConfig  # noqa: E402
from genlab.train.trainer import Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (1, 2, 4, 8, 100)
SAMPLE_SEED, PAIR_SEED, STRAIGHT_SEED = 0, 1, 2
TARGET = 0.9  # "measurably better": 1- and 2-step W2 at most 0.9x the 1-rectified flow's
HIDDEN, DEPTH = 256, 4  # the flow MLP
WARMUP = 100  # linear warm-up steps (then cosine)
PAIR_STEPS, PAIR_TEST, STRAIGHT_STEPS = 100, 1000, 100  # Euler steps of the pairs, test pairs, straightness paths
MODE_STDS, MODE_MIN = 3, 10  # "on a mode": within MODE_STDS std of its center; a mode is hit by >= MODE_MIN points
OTHER_JOBS = 0.5  # load average above this (before), or above it plus this script's threads (after): other jobs


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """W2 = sqrt(min_pi sum pi_ij ||a_i - b_j||^2) between two uniform point clouds (exact OT)."""
    a64, b64 = a.double().numpy(), b.double().numpy()
    return float(np.sqrt(ot.emd2([], [], ot.dist(a64, b64), numItermax=10**7)))


def modes(x: torch.Tensor, name: str) -> tuple[float, int]:
    """Mixtures: the fraction of points within MODE_STDS std of a mode center, and the modes with >= MODE_MIN."""
    counts = mode_counts(x, name)
    return float(counts.sum()) / len(x), int((counts >= MODE_MIN).sum())


def mode_counts(x: torch.Tensor, name: str) -> torch.Tensor:
    """Per mode center, the points within MODE_STDS std of it."""
    centers, std = toy_modes(name)
    d, k = torch.cdist(x, torch.tensor(centers, dtype=x.dtype)).min(1)
    return torch.bincount(k[d < MODE_STDS * std], minlength=len(centers))


def train(model: DiffusionModel, data, steps: int, args: argparse.Namespace, out: Path, seed: int) -> DiffusionModel:
    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, warmup=WARMUP, seed=seed, eval_examples=64,
                      ckpt_every=steps, log_every=100, device="cpu")
    t = Trainer(model, data, cfg, out)
    t.show_progress = False
    t.fit()
    return t.ema.model


def measure(
    model: DiffusionModel, test: torch.Tensor, n: int
) -> tuple[dict[int, float], dict[int, torch.Tensor], Straightness]:
    """W2 to ``test`` and the samples at each Euler step count, and the straightness of 100-step paths."""
    samples = {k: model.sample(n, generator=torch.Generator().manual_seed(SAMPLE_SEED), steps=k) for k in STEPS}
    return ({k: w2(x, test) for k, x in samples.items()}, samples,
            straightness(model, n, steps=STRAIGHT_STEPS, generator=torch.Generator().manual_seed(STRAIGHT_SEED)))


def run(name: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    splits = load_dataset(name)
    test, floor = splits.test.x[: args.n], w2(splits.train.x[: args.n], splits.test.x[: args.n])
    out = Path(args.out) / name
    torch.manual_seed(0)
    flow = genlab.create("flow", data_shape=(2,), hidden=HIDDEN, depth=DEPTH)
    rf1 = train(flow, splits, args.train_steps, args, out / "rf1", seed=0)
    t_rf1 = time.perf_counter() - t0
    w_rf1, x_rf1, s_rf1 = measure(rf1, test, args.n)
    t1 = time.perf_counter()
    pairs = reflow_splits(rf1, args.pairs, PAIR_TEST, steps=PAIR_STEPS,
                          generator=torch.Generator().manual_seed(PAIR_SEED), batch_size=10_000, name=f"{name}-pairs")
    t_pairs = time.perf_counter() - t1
    rf2 = train(copy.deepcopy(rf1).requires_grad_(True), pairs, args.reflow_steps, args, out / "rf2", seed=1)
    t_rf2 = time.perf_counter() - t1 - t_pairs
    w_rf2, x_rf2, s_rf2 = measure(rf2, test, args.n)
    return dict(name=name, floor=floor, w_rf1=w_rf1, w_rf2=w_rf2, x_rf1=x_rf1, x_rf2=x_rf2, s_rf1=s_rf1, s_rf2=s_rf2,
                test=test, t_rf1=t_rf1, t_pairs=t_pairs, t_rf2=t_rf2, total=time.perf_counter() - t0,
                t_max=float(rf1.schedule.t_max))


def plot(results: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(len(results), 5, figsize=(19, 3.9 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        ref = r["test"].numpy()
        for ax, (label, key, k) in zip(row, [("1-RF", "rf1", 1), ("2-RF", "rf2", 1), ("1-RF", "rf1", 2),
                                             ("2-RF", "rf2", 2)]):
            x = r[f"x_{key}"][k].numpy()
            ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.8", label="test")
            ax.scatter(x[:, 0], x[:, 1], s=2, c="C0" if key == "rf1" else "C3", label="samples")
            ax.set_title(f"{r['name']}: {label}, Euler {k} step{'s' * (k > 1)}, W2 {r[f'w_{key}'][k]:.3f}")
            ax.set_aspect("equal")
            ax.set_xlim(ref[:, 0].min() - 0.5, ref[:, 0].max() + 0.5)
            ax.set_ylim(ref[:, 1].min() - 0.5, ref[:, 1].max() + 0.5)
        ax = row[4]
        ax.plot(STEPS, [r["w_rf1"][k] for k in STEPS], "o-", c="C0", label="1-rectified flow")
        ax.plot(STEPS, [r["w_rf2"][k] for k in STEPS], "o-", c="C3", label="2-rectified (reflow)")
        ax.axhline(r["floor"], ls="--", c="0.5", label="floor (train vs test)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Euler steps (NFE)")
        ax.set_ylabel("W2 to test")
        ax.set_title(f"{r['name']}: W2 vs steps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def notes(r: dict, args: argparse.Namespace) -> list[str]:
    """Few-step 2-RF vs many-step 1-RF, and for mixtures where the samples sit relative to the modes."""
    name, a, b, floor = r["name"], r["w_rf1"], r["w_rf2"], r["floor"]
    lo, hi = min(b.values()), max(b.values())
    out = [f"- {name}: the 2-RF at 1 step has W2 {b[1]:.3f} vs {a[100]:.3f} for the 1-RF at 100 steps "
           f"({b[1] / a[100]:.2f}x); floor {floor:.3f}. The 2-RF's W2 over Euler {', '.join(map(str, STEPS))} "
           f"spans {lo:.3f}-{hi:.3f}, {lo / floor:.2f}-{hi / floor:.2f}x the floor."]
    if name in MIXTURES:
        centers = toy_modes(name)[0]
        test_on = modes(r["test"], name)[0]
        off = ", ".join(f"{100 * (1 - modes(r['x_rf2'][k], name)[0]):.1f}% at {k} step{'s' * (k > 1)}" for k in (1, 2))
        counts = mode_counts(r["x_rf1"][1], name)
        top = int(counts.argmax())
        on1, hit1 = modes(r["x_rf1"][1], name)
        on100, hit100 = modes(r["x_rf1"][100], name)
        out.append(
            f"  Off every mode (farther than {MODE_STDS} std from each center): 2-RF {off}, vs "
            f"{100 * (1 - test_on):.1f}% of the test points. The 1-RF's 1-step samples are {100 * on1:.1f}% on a "
            f"mode with {hit1} of {len(centers)} modes hit; {100 * float(counts[top]) / len(r['x_rf1'][1]):.1f}% "
            f"of them sit on the one mode at ({centers[top][0]:.2f}, {centers[top][1]:.2f}). After "
            f"{args.train_steps} training steps its 100-step samples are {100 * on100:.1f}% on a mode "
            f"({hit100} modes hit).")
    return out


def report(results: list[dict], args: argparse.Namespace, load: tuple, wall: float) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    threads, after = torch.get_num_threads(), os.getloadavg()[0]
    shared = load[0] > OTHER_JOBS or after > threads + OTHER_JOBS
    lines = [
        "# Reflow: 1-rectified vs 2-rectified flow, few-step Euler (CPU)", "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {threads} torch thread(s); torch {torch.__version__}, "
        f"POT {ot.__version__}, Python {platform.python_version()}; 1-min load average before {load[0]:.1f}, after "
        f"{after:.1f} ({'other jobs shared' if shared else 'no sign of other jobs on'} the CPUs: the rule is before > "
        f"{OTHER_JOBS} or after > {threads} own thread(s) + {OTHER_JOBS}); whole run {wall:.0f} s",
        f"- Model: `genlab.create(\"flow\", data_shape=(2,), hidden={HIDDEN}, depth={DEPTH})` (velocity, uniform t, "
        f"Euler on the uniform-t grid from t = {results[0]['t_max']:g})",
        f"- 1-RF: Trainer {args.train_steps} steps, batch {args.batch_size}, AdamW lr {args.lr} ({WARMUP} warm-up, "
        f"cosine), EMA {TrainConfig.ema_decay}; evaluated with the EMA weights",
        f"- Reflow: {args.pairs:,} train + {PAIR_TEST:,} test pairs (z, x0) from the 1-RF EMA model, {PAIR_STEPS} "
        f"Euler steps (`reflow_splits`); 2-RF = the 1-RF EMA weights fine-tuned {args.reflow_steps} steps on the pairs "
        f"(same optimizer settings, fresh AdamW, EMA restarted at the 1-RF weights), loss with the paired z",
        f"- W2 = sqrt(POT `emd2`, exact) between N = {args.n} samples (noise seed {SAMPLE_SEED}, the same z for "
        f"both models) and the first {args.n} held-out test points; floor = W2(first {args.n} train, test)",
        f"- Straightness on the {STRAIGHT_STEPS}-step Euler paths x_t of N = {args.n} noises (seed {STRAIGHT_SEED}): "
        "S = E int ||(z - x0) - v_t||^2 dt (Liu et al. eq. 5; 0 = straight) and path length / "
        "||x_end - x_start|| (ratio of means; 1 = straight)",
    ]
    for r in results:
        lines += ["", f"## {r['name']}", "",
                  "| model | " + " | ".join(f"Euler {k}" for k in STEPS) + " | S | length ratio |",
                  "|---|" + "---:|" * (len(STEPS) + 2)]
        for label, key in (("1-rectified", "rf1"), ("2-rectified (reflow)", "rf2")):
            s = r[f"s_{key}"]
            lines.append(f"| {label} | " + " | ".join(f"{r[f'w_{key}'][k]:.3f}" for k in STEPS)
                         + f" | {s.S:.4f} | {s.length_ratio:.4f} |")
        lines.append("| W2 ratio 2-RF / 1-RF | " + " | ".join(f"{r['w_rf2'][k] / r['w_rf1'][k]:.2f}" for k in STEPS)
                     + f" | {r['s_rf2'].S / r['s_rf1'].S:.2f} | |")
        if r["name"] in MIXTURES:
            on, hit = modes(r["test"], r["name"])
            lines += ["", f"Mode quality (W2 barely sees points between thin modes): % of points within {MODE_STDS} "
                      f"std ({MODE_STDS * toy_modes(r['name'])[1]:.3f}) of a mode center / modes with >= {MODE_MIN} "
                      "such points; "
                      f"test points: {100 * on:.1f}% / {hit}.", "",
                      "| model | " + " | ".join(f"Euler {k}" for k in STEPS) + " |", "|---|" + "---:|" * len(STEPS)]
            for label, key in (("1-rectified", "rf1"), ("2-rectified (reflow)", "rf2")):
                cells = (modes(r[f"x_{key}"][k], r["name"]) for k in STEPS)
                lines.append(f"| {label} | " + " | ".join(f"{100 * on:.1f}% / {hit}" for on, hit in cells) + " |")
        lines += ["", f"Floor W2(train, test) = {r['floor']:.3f}. Time: 1-RF training {r['t_rf1']:.0f} s, "
                  f"pairs {r['t_pairs']:.0f} s, 2-RF fine-tuning {r['t_rf2']:.0f} s, total {r['total']:.0f} s."]
    lines += ["", "## Verdict", ""]
    for r in results:
        a, b = r["w_rf1"], r["w_rf2"]
        better = b[1] <= TARGET * a[1] and b[2] <= TARGET * a[2]
        lines.append(
            f"- {r['name']}: 1-step W2 {a[1]:.3f} -> {b[1]:.3f} ({a[1] / b[1]:.1f}x lower), 2-step {a[2]:.3f} -> "
            f"{b[2]:.3f} ({a[2] / b[2]:.1f}x lower), 100-step {a[100]:.3f} -> {b[100]:.3f}; straightness S "
            f"{r['s_rf1'].S:.3f} -> {r['s_rf2'].S:.4f}. Target (1- and 2-step W2 <= {TARGET}x) "
            f"{'met' if better else 'NOT met'}.")
        if r["name"] in MIXTURES:
            (on1, hit1), (on100, hit100) = modes(r["x_rf2"][1], r["name"]), modes(r["x_rf1"][100], r["name"])
            lines.append(
                f"  Mode quality, which W2 barely sees: 2-RF 1-step samples are {100 * on1:.0f}% on a mode "
                f"({hit1} modes hit) vs {100 * on100:.0f}% ({hit100}) for the 1-RF at 100 steps.")
    lines += ["", "## Notes (computed from this run's samples)", "", *(ln for r in results for ln in notes(r, args))]
    lines += ["", "![samples and W2 vs steps](reflow.png)", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["moons", "grid25"])
    p.add_argument("--train-steps", type=int, default=3000)
    p.add_argument("--reflow-steps", type=int, default=1500)
    p.add_argument("--pairs", type=int, default=15_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", default="/tmp/genlab-reflow")
    args = p.parse_args()
    torch.set_num_threads(1)
    load, start = os.getloadavg(), time.perf_counter()
    results = []
    for name in args.datasets:
        results.append(run(name, args))
        r = results[-1]
        print(name, {k: (round(r["w_rf1"][k], 4), round(r["w_rf2"][k], 4)) for k in STEPS}, r["s_rf1"], r["s_rf2"],
              f"floor {r['floor']:.4f}, {r['total']:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    plot(results, RESULTS / "reflow.png")
    (RESULTS / "reflow.md").write_text(report(results, args, load, time.perf_counter() - start))


if __name__ == "__main__":
    main()
