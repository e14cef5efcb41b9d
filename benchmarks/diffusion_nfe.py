"""Quality vs NFE: which sampler reaches DDPM-1000 quality with few denoiser evaluations?

Run with ``python benchmarks/diffusion_nfe.py`` (~14 min on one CPU thread); it prints the tables
and writes ``benchmarks/results/diffusion_nfe.md`` and ``benchmarks/results/diffusion_nfe.png``.

For ``grid25`` and ``moons`` and three denoisers each, every sampler runs at (about) each NFE and
the samples are scored by W2 (POT ``emd2``, squared Euclidean cost, square root) against N
held-out test points:

- exact: grid25's analytic Gaussian-mixture posterior mean (``toy_modes``), moons' exact
  denoiser of a 5000-point training subsample (it reproduces those points, so W2 to the test
  points cannot go below the train-vs-test floor);
- trained ddpm: the ``ddpm`` preset (VP linear betas, eps-prediction, MLP 256 x 4) trained with
  genlab's ``Trainer``; its EMA weights sample;
- trained edm: the ``edm`` preset (EDM preconditioning and loss, sigma_data = 1 = the data's
  std, same MLP and training), sampled on the same grids as the ddpm model.

ddpm (ancestral) and ddim (eta = 0) use the DDPM timestep grid with trailing spacing; euler,
heun, dpmpp_2m and edm (stochastic, EDM's ImageNet churn settings) use the Karras grid (rho = 7)
over the VP schedule's [sigma_min, sigma_max], for every denoiser; the ``80`` rows run heun and
dpmpp_2m on the Karras grid capped at sigma_max = 80, as NVlabs/edm's ``generate.py`` samples
VP models (``sigma_max = min(80, net.sigma_max)``). Every cell starts from the same
per-sample noise (``PerSampleNoise``), so the cells are paired. Reference: DDPM ancestral at 1000
NFE. Target: the best of heun / dpmpp_2m at NFE <= 35 has W2 <= 1.10 x the reference.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple

import matplotlib
import numpy as np
import ot
import torch

import genlab
from genlab.data import load_dataset, toy_modes
from genlab.diffusion import samplers as samplers_module
from genlab.diffusion.exact import EmpiricalDenoiser, GaussianMixtureDenoiser
from genlab.diffusion.samplers import SAMPLERS, NFECounter, PerSampleNoise, sigmas_ddpm, sigmas_karras
from genlab.diffusion.schedules import VPSchedule
from genlab.train import TrainConfig, Trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

N = 1000  # generated samples = test points per W2
M_EMP = 5000  # training points of the empirical denoiser
NFES = (2, 4, 8, 16, 35, 100, 1000)
VP = VPSchedule()
CAP = 80.0  # EDM's sigma_max, used by the capped rows
KARRAS_RHO = 7.0  # the Karras grids' rho
ROWS = {  # row label -> (sampler, Karras sigma_max; None = the DDPM timestep grid)
    "ddpm": ("ddpm", None), "ddim": ("ddim", None), "euler": ("euler", VP.sigma_max),
    "heun": ("heun", VP.sigma_max), "dpmpp_2m": ("dpmpp_2m", VP.sigma_max),
    "edm": ("edm", VP.sigma_max), "heun 80": ("heun", CAP), "dpmpp_2m 80": ("dpmpp_2m", CAP),
}
TARGET_ROWS = ("heun", "dpmpp_2m", "heun 80", "dpmpp_2m 80")
MODELS = {"ddpm": {}, "edm": {"sigma_data": 1.0}}  # trained presets and their overrides
TWO_PER_STEP = ("heun", "edm")  # NFE = 2 steps - 1
EDM_KW = {"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.003}
TRAIN = {"steps": 4000, "batch_size": 256, "lr": 1e-3, "seed": 0, "eval_examples": 64, "ckpt_every": 4000}
HIDDEN, DEPTH = 256, 4  # the trained presets' MLP
FAR = 1.0  # a generated sample this far from every test point is off the data (diagnostic)
FEW_FAR = 5  # far_note lists the noises of the cells with 1 to FEW_FAR far samples
FAR_EXAMPLE = 20.0  # the distance in the "[k]" explanation's example
TARGET_NFE, TARGET_RATIO = 35, 1.10  # target: best heun / dpmpp_2m at NFE <= TARGET_NFE within TARGET_RATIO x ddpm@1000
STOCHASTIC = ("ddpm", "edm")  # samplers that add noise along the way; every other row is a deterministic ODE solver
OTHER_JOBS = 0.5  # load average above this (before), or above it plus the 1 thread used here (after): other jobs
NOISE_SEED, SUBSET_SEED = 10_000, 0
RESULTS = Path(__file__).resolve().parent / "results"


class Cell(NamedTuple):
    w2: float
    nfe: int
    far_idx: tuple[int, ...]  # generated samples farther than FAR from every test point
    w2_kept: float | None  # W2 without them (None when there are none)
    seconds: float = 0.0  # time to generate the cell's samples

    @property
    def far(self) -> int:
        return len(self.far_idx)

    @property
    def bulk(self) -> float:
        return self.w2 if self.w2_kept is None else self.w2_kept


def plan(name: str, target: int) -> tuple[int, int]:
    """(steps, actual NFE): the largest NFE <= target the sampler can reach."""
    if name in TWO_PER_STEP:
        steps = (target + 1) // 2
        return steps, 2 * steps - 1
    return target, target


def initial_noise() -> PerSampleNoise:
    return PerSampleNoise(range(NOISE_SEED, NOISE_SEED + N), (2,))


def generate(denoiser, row: str, target: int) -> tuple[np.ndarray, int]:
    name, sigma_max = ROWS[row]
    steps, nfe = plan(name, target)
    if sigma_max is None:
        sigmas = sigmas_ddpm(VP, steps, "trailing")
    else:
        sigmas = sigmas_karras(steps, VP.sigma_min, sigma_max, rho=KARRAS_RHO)
    noise = initial_noise()
    x = noise() * sigmas[0]
    kw = {"noise": noise} if name in ("ddpm", "ddim", "edm") else {}
    kw.update(EDM_KW if name == "edm" else {})
    D = NFECounter(denoiser)
    with torch.no_grad():
        out = SAMPLERS[name](D, x, sigmas, **kw)
    assert D.nfe == nfe, (name, target, D.nfe, nfe)
    return out.double().numpy(), nfe


def w2(a: np.ndarray, b: np.ndarray, cost: np.ndarray | None = None) -> float:
    cost = ot.dist(a, b) if cost is None else cost  # squared Euclidean
    return float(np.sqrt(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10**7)))


def score(x: np.ndarray, test: np.ndarray, nfe: int) -> Cell:
    """W2, and the samples farther than ``FAR`` from every test point with W2 without them (diagnostic)."""
    cost = ot.dist(x, test)
    near = cost.min(1) <= FAR**2
    kept = None if near.all() else w2(x[near], test, cost[near]) if near.any() else float("nan")
    return Cell(w2(x, test, cost), nfe, tuple(np.flatnonzero(~near).tolist()), kept)


def train(preset: str, data) -> tuple[object, dict]:
    torch.manual_seed(TRAIN["seed"])  # the network's initialisation
    model = genlab.create(preset, data_shape=(2,), hidden=HIDDEN, depth=DEPTH, **MODELS[preset])
    with tempfile.TemporaryDirectory(prefix=f"genlab_nfe_{data.train.name}_{preset}_") as out:
        trainer = Trainer(model, data, TrainConfig(**TRAIN), out)
        trainer.show_progress = False
        metrics = trainer.fit()
    return trainer.ema.model.denoiser, metrics


def sweep(denoiser, test: np.ndarray, all_at_1000: bool) -> dict[str, dict[int, Cell]]:
    """A cell per row and target NFE; at 1000 only ddpm (the reference) unless ``all_at_1000``."""
    table: dict[str, dict[int, Cell]] = {}
    for row in ROWS:
        table[row] = {}
        for target in NFES:
            if target == 1000 and row != "ddpm" and not all_at_1000:
                continue
            t0 = time.perf_counter()
            x, nfe = generate(denoiser, row, target)
            seconds = time.perf_counter() - t0
            table[row][target] = score(x, test, nfe)._replace(seconds=seconds)
    return table


def passes(table, value: Callable[[Cell], float] = lambda c: c.w2) -> bool:
    best = min(value(c) for n in TARGET_ROWS for c in table[n].values() if c.nfe <= TARGET_NFE)
    return best <= TARGET_RATIO * value(table["ddpm"][1000])


def verdict(table, value: Callable[[Cell], float]) -> str:
    ref = value(table["ddpm"][1000])
    best, where = min((value(c), f"{n}@{c.nfe}") for n in TARGET_ROWS for c in table[n].values() if c.nfe <= TARGET_NFE)
    return (f"ddpm@1000 {ref:.4f}; best heun / dpmpp_2m (either grid) at <= {TARGET_NFE} NFE {best:.4f} ({where}) = "
            f"{best / ref:.3f} x reference -> **{'PASS' if passes(table, value) else 'FAIL'}**")


def noise_norms() -> tuple[torch.Tensor, dict[int, int]]:
    """|z| of every initial noise, and each noise's rank by |z| (1 = largest)."""
    z = initial_noise()().norm(dim=1)
    return z, {int(i): r + 1 for r, i in enumerate(z.argsort(descending=True))}


def best_w2(table, row: str) -> float:
    return min(c.w2 for c in table[row].values() if c.nfe <= TARGET_NFE)


def why(runs) -> list[str]:
    """Why trained tables fail the target, from this run's far samples: the noise most often sent off the data."""
    failing = [key for key, table in runs.items() if not passes(table)]
    if not failing:
        return ["Every denoiser passes the target in this run."]
    deterministic = [row for row, (name, _) in ROWS.items() if name not in STOCHASTIC]
    det_cells = [c for key in failing for row in deterministic for c in runs[key][row].values()]
    counts = Counter(i for c in det_cells for i in c.far_idx)
    if not counts:
        return [f"Failing the target: {', '.join(f'{ds} {label}' for ds, label in failing)}; no generated sample "
                f"in their deterministic-sampler cells is farther than {FAR} from every test point."]
    i, k = counts.most_common(1)[0]
    z, rank = noise_norms()
    r = float(z[i])
    ddpm_cells = [c for key in failing for c in runs[key]["ddpm"].values()]
    passing = [key for key in runs if key not in failing]
    pass_cells = [c for key in passing for row in deterministic for c in runs[key][row].values()]
    cap = getattr(samplers_module, "KARRAS_SIGMA_MAX", None)
    capped = {name: row for name in ("heun", "dpmpp_2m") for row, grid in ROWS.items() if grid == (name, CAP)}
    cap_cells = [c for key in failing for row in capped.values() for c in runs[key][row].values()]
    lines = [
        f"Failing the target: {', '.join(f'{ds} {label}' for ds, label in failing)}; passing: "
        f"{', '.join(f'{ds} {label}' for ds, label in passing) or 'none'}. In the failing tables, initial noise seed "
        f"{NOISE_SEED + i} (|z| = {r:.2f}, rank {rank[i]} of {N} by |z|) is farther than {FAR} from every test point "
        f"in {k} of the {len(det_cells)} cells of the deterministic samplers ({', '.join(deterministic)}) and in "
        f"{sum(i in c.far_idx for c in ddpm_cells)} of the {len(ddpm_cells)} DDPM ancestral cells (which re-noise "
        f"along the way); in the passing tables it is in {sum(i in c.far_idx for c in pass_cells)} of "
        f"{len(pass_cells)} deterministic-sampler cells. A 2-d standard normal has |z| >= {r:.2f} with probability "
        f"exp(-|z|^2 / 2) = {np.exp(-r * r / 2):.1e}, so such a noise is a rare training input at high sigma.",
        "A likely mechanism (not measured here): an eps-prediction network returns D = x - sigma F, so its error "
        "at high sigma is multiplied by sigma; EDM's preconditioning (c_out -> sigma_data) bounds it (Karras et al. "
        "2022, section 5).",
        f"Capping the Karras grid at sigma_max = {CAP:g} (rows {', '.join(capped.values())}"
        + (", the cap of `make_sigmas`' default Karras grid" if cap == CAP else "")
        + f"), best W2 at <= {TARGET_NFE} NFE in the failing tables: "
        + "; ".join(f"{ds} {label}: " + ", ".join(
            f"{row} {best_w2(runs[(ds, label)], row):.4f} -> {best_w2(runs[(ds, label)], low):.4f}"
            for row, low in capped.items()) for ds, label in failing)
        + f"; the seed is far in {sum(i in c.far_idx for c in cap_cells)} of the {len(cap_cells)} capped cells.",
    ]
    return lines


def far_note(table) -> list[str]:
    """Which initial noises the cells with 1 to FEW_FAR far samples send off the data, and how extreme they are."""
    cells = [c for row in table.values() for c in row.values() if 1 <= c.far <= FEW_FAR]
    if not cells:
        return []
    z, rank = noise_norms()
    seeds = ", ".join(f"seed {NOISE_SEED + i} in {k} cell{'s' * (k > 1)} (|z| = {z[i]:.2f}, rank {rank[i]} of {N} by |z|)"
                      for i, k in Counter(i for c in cells for i in c.far_idx).most_common())
    return ["", f"{len(cells)} cells have 1-{FEW_FAR} far samples; their initial noises: {seeds}."]


def markdown_table(table, text: Callable[[Cell], str]) -> list[str]:
    lines = ["| sampler | " + " | ".join(f"NFE {t}" for t in NFES) + " |", "|---|" + "---:|" * len(NFES)]
    for name, row in table.items():
        cells = ["—" if t not in row else text(row[t]) + ("" if row[t].nfe == t else f" ({row[t].nfe})") for t in NFES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    torch.set_num_threads(1)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    runs, floors, timings, train_info, test_sizes = {}, {}, {}, {}, {}
    for ds in ("grid25", "moons"):
        data = load_dataset(ds)
        test_sizes[ds] = len(data.test)
        g = torch.Generator().manual_seed(SUBSET_SEED)
        test = data.test.x[torch.randperm(len(data.test), generator=g)[:N]].double().numpy()
        sub = data.train.x[torch.randperm(len(data.train), generator=g)[:M_EMP]]
        floor = [w2(block.double().numpy(), test) for block in sub.split(N)]  # 5 disjoint train samples
        floors[ds] = (statistics.mean(floor), statistics.stdev(floor))
        if ds == "grid25":
            centers, std = toy_modes(ds)
            exact, label = GaussianMixtureDenoiser(torch.from_numpy(centers), std), "exact (analytic GMM)"
        else:
            exact, label = EmpiricalDenoiser(sub), f"exact (empirical, {M_EMP} train points)"
        t = time.perf_counter()
        runs[(ds, label)] = sweep(exact, test, all_at_1000=ds == "grid25")
        timings[(ds, label)] = time.perf_counter() - t
        for preset in MODELS:
            t = time.perf_counter()
            denoiser, metrics = train(preset, data)
            train_info[(ds, preset)] = (time.perf_counter() - t, metrics["test_loss"])
            t = time.perf_counter()
            runs[(ds, f"trained {preset}")] = sweep(denoiser, test, all_at_1000=False)
            timings[(ds, f"trained {preset}")] = time.perf_counter() - t
    total = time.perf_counter() - t_start

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    threads, load_after = torch.get_num_threads(), os.getloadavg()
    shared = load_before[0] > OTHER_JOBS or load_after[0] > threads + OTHER_JOBS
    # generation time per NFE (all N samples) of the denoisers whose NFE-1000 column holds only ddpm
    ms_nfe = {key: 1000 * sum(c.seconds for row in table.values() for c in row.values())
              / sum(c.nfe for row in table.values() for c in row.values())
              for key, table in runs.items() if len(table["heun"]) < len(table["ddpm"])}
    md = [
        "# Diffusion samplers: quality (W2) vs NFE",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {threads} torch thread(s); torch {torch.__version__}, "
        f"POT {ot.__version__}, Python {platform.python_version()}; load average (1/5/15 min) before "
        f"{'/'.join(f'{v:.1f}' for v in load_before)}, after {'/'.join(f'{v:.1f}' for v in load_after)} "
        f"({'other jobs shared' if shared else 'no sign of other jobs on'} the CPUs: the rule is 1-min load before > "
        f"{OTHER_JOBS} or after > {threads} own thread(s) + {OTHER_JOBS})",
        f"- Whole run {total:.0f} s (`{Path(sys.argv[0]).name}`): "
        + "; ".join(f"{ds} {lab} sampling {s:.0f} s" for (ds, lab), s in timings.items())
        + "; " + "; ".join(f"{ds} {preset} training {s:.0f} s" for (ds, preset), (s, _) in train_info.items()),
        f"- W2: POT `emd2`, squared Euclidean cost, sqrt; N = {N} generated samples vs the same N test points "
        f"(seeded subset of the {'/'.join(f'{n}' for n in dict.fromkeys(test_sizes.values()))}-point test split); "
        f"generated noise seeds {NOISE_SEED}..{NOISE_SEED + N - 1}, "
        "identical for every cell (paired).",
        f"- Floor: W2 between {M_EMP // N} disjoint {N}-point training samples and the test points, mean ± sd "
        f"(the sd is the scale of W2's sampling noise). The {N}-point samples partition the {M_EMP}-point subsample "
        "that the moons empirical denoiser memorises, so this is also its floor.",
        "- Grids: ddpm (ancestral, fixed_small) and ddim (eta = 0) on the DDPM timesteps, trailing spacing; euler, "
        f"heun, dpmpp_2m and edm on the Karras grid (rho = {KARRAS_RHO:g}) over the VP range "
        f"[{VP.sigma_min:.4f}, {VP.sigma_max:.1f}], for every denoiser; "
        + " and ".join(f"`{row}`" for row, (_, smax) in ROWS.items() if smax == CAP)
        + f" on the Karras grid over [{VP.sigma_min:.4f}, {CAP:.0f}] "
        "(EDM's sigma_max; NVlabs/edm `generate.py` caps VP models there); x = sigma_max * noise. "
        f"edm: {', '.join(f'{k}={v}' for k, v in EDM_KW.items())}.",
        "- NFE: counted by `NFECounter` and asserted; heun / edm use 2 steps - 1, shown in brackets where it differs "
        "from the column. NFE 1000: every sampler on the analytic GMM (cheap), only ddpm (the reference) on the "
        "empirical and trained denoisers ("
        + (f"{min(ms_nfe.values()):.0f}-{max(ms_nfe.values()):.0f} ms per NFE for {N} samples at {threads} "
           "thread(s) in this run, generation time over NFE per denoiser; " if ms_nfe else "")
        + "the full column would not fit the time budget).",
        f"- [k]: k of the {N} generated samples lie farther than {FAR} from every test point (off the data); W2 is "
        f"very sensitive to them (one sample at distance {FAR_EXAMPLE:g} adds {FAR_EXAMPLE**2:g} / {N} = "
        f"{FAR_EXAMPLE**2 / N:g} to W2^2), so where any occur a second table gives "
        "W2 without them, as a diagnostic only; the target is judged on the first table.",
        f"- Trained: `genlab.create(preset, data_shape=(2,), hidden={HIDDEN}, depth={DEPTH}, **overrides)` for "
        + ", ".join(f"`{p}`" + (f" {kw}" if kw else "") for p, kw in MODELS.items())
        + f"; Trainer with {', '.join(f'{k}={v}' for k, v in TRAIN.items())} (cosine LR, EMA "
        f"{TRAIN.get('ema_decay', TrainConfig.ema_decay)}); the EMA "
        "denoiser samples. Test loss (each preset's own weighted loss): "
        + "; ".join(f"{ds} {preset} {loss:.4f}" for (ds, preset), (_, loss) in train_info.items()),
        "",
        f"Target: heun or DPM-Solver++(2M) at <= {TARGET_NFE} NFE within {TARGET_RATIO - 1:.0%} of DDPM ancestral at "
        f"1000 NFE (best of heun / dpmpp_2m, either grid, over NFE <= {TARGET_NFE}, PASS if W2 <= {TARGET_RATIO:.2f} x "
        "reference).",
        "",
        "Verdicts:",
        "",
        *(f"- {ds}, {label}: {verdict(table, lambda c: c.w2)}" for (ds, label), table in runs.items()),
        "",
        *why(runs),
    ]
    for (ds, label), table in runs.items():
        mean, sd = floors[ds]
        md += ["", f"## {ds}, {label}", "", *markdown_table(table, lambda c: f"{c.w2:.4f}" + (f" [{c.far}]" if c.far else "")),
               "", f"Floor {mean:.4f} ± {sd:.4f}. Target: {verdict(table, lambda c: c.w2)}"]
        if any(c.far for row in table.values() for c in row.values()):
            md += [*far_note(table), "", f"Diagnostic, not the target: W2 without the [k] samples farther than {FAR} from every test point",
                   "", *markdown_table(table, lambda c: f"{c.bulk:.4f}"), "", f"Diagnostic: {verdict(table, lambda c: c.bulk)}"]
    text = "\n".join(md) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "diffusion_nfe.md").write_text(text)
    print(text)
    plot(runs, floors)


def plot(runs, floors) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    for ax, ((ds, label), table) in zip(axes.flat, runs.items()):
        for name, row in table.items():
            ax.plot([c.nfe for c in row.values()], [c.w2 for c in row.values()], "o-", ms=4, label=name)
        ax.axhline(floors[ds][0], color="k", ls="--", lw=1, label="floor (train vs test)")
        ax.axhline(TARGET_RATIO * table["ddpm"][1000].w2, color="gray", ls=":", lw=1.5,
                   label=f"{TARGET_RATIO:.2f} x ddpm@1000")
        ax.set(xscale="log", yscale="log", ylim=(0.08, 3), xlabel="NFE", ylabel=f"W2 to {N} test points (clipped at 3)",
               title=f"{ds}, {label}")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "diffusion_nfe.png", dpi=110)


if __name__ == "__main__":
    main()
