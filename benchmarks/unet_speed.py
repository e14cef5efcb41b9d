"""genlab UNet vs diffusers UNet2DModel on 28x28: speed at matched parameters, and quality.

Three networks, all built for 1x28x28:

- diffusers ``UNet2DModel``: widths (64, 128, 128) at 28x28, 14x14, 7x7; two ResBlocks per level
  down and three up; self-attention (head dim 64) after every ResBlock of the 7x7 level and in the
  middle block; GroupNorm(32); 6,469,889 parameters. diffusers runs 28 -> 14 -> 7, no padding.
- genlab UNet, same layout: the identical architecture (same parameter count) - compares the two
  implementations.
- genlab UNet, efficient layout: the same widths with ResBlocks per level (1, 1, 3) instead of
  (2, 2, 2) - Imagen's Efficient U-Net allocation (fewer blocks at high resolution, more at low),
  which ``UNet2DModel`` cannot express (one ``layers_per_block`` for all levels); 1.4% fewer
  parameters.

Speed: (a) training step - forward, MSE against random targets, backward, AdamW step; (b) one
inference forward under ``torch.no_grad`` (one NFE); batch 64. Models are timed interleaved
(A, B, C, A, B, C, ...) after warm-up rounds; medians (ratios: the median of the per-repeat
ratios). Two passes: wall clock with ``--threads`` (default: all CPUs), then process CPU time
with one thread, which barely moves when other jobs share the machine.

Quality (a speed claim across layouts needs one): the efficient layout and diffusers train the
same DDPM objective (VP linear betas, eps-prediction, uniform t, genlab's ``Denoiser``; diffusers
gets the integer timestep it expects) on mnist5k with the same batches, timesteps and noises,
AdamW lr 5e-4, batch 32; every ``--eval-every`` steps the eps-MSE on 128 fixed test images with
fixed timesteps and noises is recorded. ``--quality-seeds`` runs (default 2) differ in the
initialisation and the batch stream; each run gives both networks the same seed.

``--extra`` adds channels-last variants. Writes ``benchmarks/results/unet_speed.md`` and
``unet_speed.png`` (test loss vs step and vs training seconds).

    python benchmarks/unet_speed.py [--repeats 5] [--quality-steps 150] [--quality-seeds 2] [--no-quality] [--extra]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning
# threads waiting for a preempted sibling multiply step times erratically (set it to override).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count  # noqa: E402

from genlab.data import load_dataset  # noqa: E402
from genlab.diffusion.denoiser import Denoiser  # noqa: E402
from genlab.diffusion.losses import UniformDiscreteT, diffusion_loss  # noqa: E402
from genlab.diffusion.schedules import VPSchedule  # noqa: E402
from genlab.nn.unet import UNet, UNetConfig  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

RESULTS = Path(__file__).parent / "results"
TARGET = 1.3
SAME, EFFICIENT, THEIRS = "genlab UNet, same layout", "genlab UNet, efficient (1, 1, 3)", "diffusers UNet2DModel"
SIZE = 28  # input 1 x SIZE x SIZE
CHANNELS, CHANNEL_MULT = 64, (1, 2, 2)  # level widths CHANNELS * CHANNEL_MULT
WIDTHS = tuple(CHANNELS * m for m in CHANNEL_MULT)
HEAD_DIM, GROUPS = 64, 32  # attention head dim, GroupNorm groups
SAME_BLOCKS = 2  # ResBlocks per level (down) of diffusers and the same-layout genlab UNet
EFFICIENT_BLOCKS = (1, 1, 3)
SPEED_LR = 1e-4  # AdamW of the timed training steps
QUALITY_BATCH, QUALITY_LR, QUALITY_TEST = 32, 5e-4, 128  # batch, AdamW lr, fixed test images
QUALITY_TOLERANCE = 1.05  # the efficient layout's test loss at equal steps may exceed diffusers' by this factor
CHANNELS_LAST = {  # --extra variant -> the default-layout model it is compared with
    "genlab UNet, same layout (channels_last)": SAME, "diffusers (channels_last)": THEIRS,
}


Net = tuple[nn.Module, Callable[[Tensor, Tensor], Tensor]]


def build_ours(blocks: int | tuple[int, ...] = SAME_BLOCKS, channels_last: bool = False) -> Net:
    cfg = UNetConfig(
        in_channels=1, channels=CHANNELS, channel_mult=CHANNEL_MULT, num_res_blocks=blocks, attn_levels=(-1,),
        attn_head_dim=HEAD_DIM, groups=GROUPS, channels_last=channels_last,
    )
    net = UNet(cfg)
    return net, net


class DiffusersNet(nn.Module):
    """``UNet2DModel`` with genlab's network signature ``(x, c_noise, class_labels)``."""

    def __init__(self, channels_last: bool = False) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=SIZE, in_channels=1, out_channels=1, block_out_channels=WIDTHS,
            layers_per_block=SAME_BLOCKS, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=HEAD_DIM,
            norm_num_groups=GROUPS,
        )
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        return self.unet(x, c_noise).sample


def build_diffusers(channels_last: bool = False) -> Net:
    net = DiffusersNet(channels_last)
    return net, net


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def speed_inputs(batch: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The timed steps' input x, MSE target and timesteps t (fixed seed)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, size, size, generator=gen)
    target = torch.randn(batch, 1, size, size, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen).float()
    return x, target, t


def measure(
    nets: dict[str, Net], batch: int, size: int, repeats: int, warmup: int,
    clock: Callable[[], float],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per training step and per inference forward, models interleaved per repeat."""
    x, target, t = speed_inputs(batch, size)
    opts = {name: torch.optim.AdamW(net.parameters(), lr=SPEED_LR) for name, (net, _) in nets.items()}

    def train_step(name: str) -> float:
        t0 = clock()
        loss = F.mse_loss(nets[name][1](x, t), target)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        return clock() - t0

    @torch.no_grad()
    def infer(name: str) -> float:
        t0 = clock()
        nets[name][1](x, t)
        return clock() - t0

    for _ in range(warmup):
        for name in nets:
            train_step(name)
            infer(name)
    train: dict[str, list[float]] = {name: [] for name in nets}
    inf: dict[str, list[float]] = {name: [] for name in nets}
    for r in range(repeats):
        for name in nets:
            train[name].append(train_step(name))
        for name in nets:
            inf[name].append(infer(name))
        print(f"  repeat {r + 1}/{repeats}: " + ", ".join(
            f"{n}: {batch / train[n][-1]:.1f} img/s, {1000 * inf[n][-1]:.0f} ms" for n in nets))
    return train, inf


def is_conv(op: str) -> bool:
    """A convolution operator (forward or backward), by its FlopCounterMode or profiler name."""
    return "conv" in op.lower()


# FlopCounterMode's registry has SDPA's CUDA kernels only; count the CPU kernel with torch's own formulas.
SDPA_CPU = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(g, q, k, v),
}


def count_flops(fn: Callable[[], object]) -> tuple[int, int]:
    """(convolution FLOPs, all counted FLOPs) of ``fn()``, from FlopCounterMode's per-operator counts."""
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU) as counter:
        fn()
    ops = counter.get_flop_counts().get("Global", {})
    return sum(n for op, n in ops.items() if is_conv(str(op))), counter.get_total_flops()


@dataclass
class Work:
    conv_mac: int  # convolution multiply-adds of one image's forward (FLOPs / 2)
    mac: int  # all counted multiply-adds of one image's forward
    step_conv_flops: int  # convolution FLOPs of one training step (forward + backward) at the timed batch
    step_flops: int  # all counted FLOPs of that step
    conv_s: float  # profiled training step, 1 thread: self CPU seconds in convolution operators
    total_s: float  # ... and in all operators

    @property
    def conv_share(self) -> float:
        return self.conv_s / self.total_s

    @property
    def conv_gflops(self) -> float:
        return self.step_conv_flops / self.conv_s / 1e9


def work(net: nn.Module, batch: int, size: int) -> Work:
    """Count one image's forward and one training step's FLOPs, and profile one 1-thread training step."""
    x, target, t = speed_inputs(batch, size)
    with torch.no_grad():
        conv_f, all_f = count_flops(lambda: net(x[:1], t[:1]))

    def step(opt: torch.optim.Optimizer | None = None) -> None:
        loss = F.mse_loss(net(x, t), target)
        net.zero_grad(set_to_none=True)
        loss.backward()
        if opt is not None:
            opt.step()

    step_conv, step_all = count_flops(step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(net.parameters(), lr=SPEED_LR)
    step(opt)  # warm-up: the optimizer state is allocated outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(opt)
    torch.set_num_threads(threads)
    events = prof.key_averages()
    conv_s = sum(e.self_cpu_time_total for e in events if is_conv(e.key)) / 1e6
    total_s = sum(e.self_cpu_time_total for e in events) / 1e6
    return Work(conv_f // 2, all_f // 2, step_conv, step_all, conv_s, total_s)


def work_notes(w: dict[str, Work]) -> list[str]:
    """The explanation of the same-layout ratio, from this run's counts and profile."""
    s, e, d = w[SAME], w[EFFICIENT], w[THEIRS]
    fewer = abs(1 - s.conv_mac / d.conv_mac)
    return [
        f"Same layout, where the time goes: convolutions take {s.conv_share:.0%} of a 1-thread training step's self "
        f"CPU time in ours and {d.conv_share:.0%} in diffusers' (torch profiler), at {s.conv_gflops:.0f} vs "
        f"{d.conv_gflops:.0f} GFLOP/s (counted convolution FLOPs over the profiled convolution time). Ours does "
        f"{fewer:.0%} {'fewer' if s.conv_mac <= d.conv_mac else 'more'} conv multiply-adds per image "
        f"({s.conv_mac / 1e6:,.0f}M vs {d.conv_mac / 1e6:,.0f}M; its upsampling convs run at the low resolution "
        f"before a pixel shuffle, `genlab.nn.unet.Upsample`) and spends {s.total_s - s.conv_s:.2f} s vs "
        f"{d.total_s - d.conv_s:.2f} s of the profiled step outside convolutions. The efficient layout does "
        f"{e.conv_mac / 1e6:,.0f}M conv multiply-adds per image, {1 - e.conv_mac / d.conv_mac:.0%} fewer than "
        "diffusers'.",
    ]


Curve = list[tuple[int, float, float]]  # (step, training seconds so far, test eps-MSE)


def train_quality(
    nets: dict[str, nn.Module], steps: int, batch: int, eval_every: int, lr: float, seed: int,
) -> dict[str, Curve]:
    """Per net: (step, training seconds so far, test eps-MSE) every ``eval_every`` steps.

    Both nets see the same batches, timesteps and noises (one seeded stream per step), so the
    curves differ only by architecture and initialisation.
    """
    data = load_dataset("mnist5k")
    schedule = VPSchedule()
    t_sampler = UniformDiscreteT(schedule)
    g = torch.Generator().manual_seed(1)
    test = data.test.x[torch.randperm(len(data.test), generator=g)[:QUALITY_TEST]]
    test_seed = 2
    curves: dict[str, Curve] = {}
    for name, net in nets.items():
        den = Denoiser(net, schedule, "eps")
        opt = torch.optim.AdamW(net.parameters(), lr=lr)

        @torch.no_grad()
        def test_loss() -> float:
            net.eval()
            loss = diffusion_loss(den, test, t_sampler, "snr", generator=torch.Generator().manual_seed(test_seed))
            net.train()
            return float(loss.mean())

        curve, seconds = [(0, 0.0, test_loss())], 0.0
        for step in range(1, steps + 1):
            gs = torch.Generator().manual_seed(100_000 * seed + 1000 + step)
            x0 = data.train.x[torch.randint(len(data.train), (batch,), generator=gs)]
            t0 = time.perf_counter()
            loss = diffusion_loss(den, x0, t_sampler, "snr", generator=gs).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seconds += time.perf_counter() - t0
            if step % eval_every == 0 or step == steps:
                curve.append((step, seconds, test_loss()))
                print(f"  seed {seed}, {name}: step {step}, {seconds:.0f} s, test eps-MSE {curve[-1][2]:.4f}")
        curves[name] = curve
    return curves


def mean_curve(curves: list[Curve]) -> Curve:
    """Point-wise mean over seeds (same evaluation steps in every run)."""
    return [(pts[0][0], statistics.mean(p[1] for p in pts), statistics.mean(p[2] for p in pts)) for pts in zip(*curves)]


def plot_quality(runs: list[dict[str, Curve]], out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, name in enumerate(runs[0]):
        for seed, run in enumerate(runs):
            steps, secs, loss = zip(*run[name][1:])
            style = dict(color=f"C{i}", ms=3, label=name if seed == 0 else None, alpha=1 if seed == 0 else 0.5)
            axes[0].plot(steps, loss, "o-", **style)
            axes[1].plot(secs, loss, "o-", **style)
    axes[0].set(xlabel=f"training step (batch {QUALITY_BATCH})", ylabel=f"test eps-MSE ({QUALITY_TEST} fixed images)",
                yscale="log")
    axes[1].set(xlabel="training seconds (wall clock)", yscale="log")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"DDPM on mnist5k: same batches, timesteps and noises ({len(runs)} seeds, one line each)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-cpu-time", action="store_true", help="skip the 1-thread CPU-time pass")
    ap.add_argument("--extra", action="store_true", help="add channels-last variants")
    ap.add_argument("--no-quality", action="store_true", help="skip the training-quality comparison")
    ap.add_argument("--quality-steps", type=int, default=150)
    ap.add_argument("--quality-seeds", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    builders: dict[str, Callable[[], Net]] = {
        SAME: build_ours, EFFICIENT: lambda: build_ours(EFFICIENT_BLOCKS), THEIRS: build_diffusers,
    }
    if args.extra:
        label_ours, label_theirs = CHANNELS_LAST
        builders[label_ours] = lambda: build_ours(channels_last=True)
        builders[label_theirs] = lambda: build_diffusers(channels_last=True)
    nets = {}
    for name, build in builders.items():
        torch.manual_seed(0)
        nets[name] = build()
    params = {name: sum(p.numel() for p in net.parameters()) for name, (net, _) in nets.items()}
    for name, n in params.items():
        print(f"{name}: {n:,} parameters")

    load_before = os.getloadavg()
    start = time.perf_counter()
    passes = [(f"wall clock, {args.threads} threads", args.threads, time.perf_counter)]
    if not args.no_cpu_time:
        passes.append(("process CPU time, 1 thread", 1, time.process_time))
    results = []
    for label, threads, clock in passes:
        print(f"{label}:")
        torch.set_num_threads(threads)
        train, inf = measure(nets, args.batch, SIZE, args.repeats, args.warmup, clock)
        results.append((label, train, inf))
    speed_seconds = time.perf_counter() - start
    print("FLOP counts and a profiled 1-thread training step:")
    t_work = time.perf_counter()
    works = {name: work(nets[name][0], args.batch, SIZE) for name in (SAME, EFFICIENT, THEIRS)}
    work_seconds = time.perf_counter() - t_work

    runs: list[dict[str, Curve]] = []
    if not args.no_quality:
        torch.set_num_threads(args.threads)
        print(f"quality: {args.quality_steps} steps each, {args.threads} threads")
        for seed in range(args.quality_seeds):
            fresh = {}
            for name in (EFFICIENT, THEIRS):
                torch.manual_seed(seed)
                fresh[name] = builders[name]()[0]
            runs.append(train_quality(fresh, args.quality_steps, QUALITY_BATCH, args.eval_every, QUALITY_LR, seed))
    elapsed = time.perf_counter() - start
    load_after = os.getloadavg()

    res = [SIZE]
    for _ in WIDTHS[1:]:
        res.append(-(-res[-1] // 2))  # a stride-2 conv maps n to ceil(n / 2)
    lines = [
        f"# UNet on {SIZE}x{SIZE}: genlab vs diffusers (CPU)",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"diffusers {__import__('diffusers').__version__}, Python {platform.python_version()}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
        f"- Load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)} (this script keeps at most {args.threads} thread(s) busy; "
        "load above that is other jobs'); interleaving spreads other jobs' load over all models, and process CPU "
        "time is less sensitive to it than wall clock",
        f"- Speed: input {args.batch}x1x{SIZE}x{SIZE} fp32; {args.warmup} warm-up round(s) excluded; {args.repeats} "
        f"interleaved repeats ({speed_seconds:.0f} s); whole run {elapsed:.0f} s. img/s and ms: each model's "
        "median; ratios: the median over repeats of the ratio within each repeat (the models of one repeat run "
        "back to back, so load that drifts between repeats cancels)",
        f"- Training step: forward, MSE to random targets, backward, AdamW(lr={SPEED_LR:g}) step. "
        "Inference: one forward under no_grad (= 1 NFE).",
        f"- Layouts: widths {WIDTHS} at {'/'.join(map(str, res))} px, attention (head dim {HEAD_DIM}) at "
        f"{res[-1]}x{res[-1]} and in the middle block, GroupNorm({GROUPS}) for all; ResBlocks per level (down; up "
        f"has one more) {(SAME_BLOCKS,) * len(WIDTHS)} for diffusers and the same-layout genlab UNet, "
        f"{EFFICIENT_BLOCKS} for the efficient one (Imagen's Efficient U-Net allocation; `UNet2DModel` has one "
        "`layers_per_block` for all levels).",
        "",
    ]
    verdict = []
    for label, train, inf in results:
        img_s = {n: args.batch / statistics.median(v) for n, v in train.items()}
        ms = {n: 1000 * statistics.median(v) for n, v in inf.items()}
        r_train = {n: statistics.median(b / a for a, b in zip(v, train[THEIRS])) for n, v in train.items()}
        r_inf = {n: statistics.median(b / a for a, b in zip(v, inf[THEIRS])) for n, v in inf.items()}
        lines += [
            f"## {label}",
            "",
            "| model | params | train img/s | ms per NFE | train vs diffusers | NFE vs diffusers |",
            "|---|---:|---:|---:|---:|---:|",
            *(f"| {n} | {params[n]:,} | {img_s[n]:.1f} | {ms[n]:.0f} | {r_train[n]:.2f}x | "
              f"{r_inf[n]:.2f}x |" for n in nets),
            "",
        ]
        verdict.append((label, r_train[EFFICIENT], r_inf[EFFICIENT], r_train[SAME], r_inf[SAME]))
    fast = all(rt >= TARGET and ri >= TARGET for _, rt, ri, _, _ in verdict)
    good = True
    if runs:
        eff, ref = (mean_curve([run[n] for run in runs]) for n in (EFFICIENT, THEIRS))
        lines += [
            f"## Quality: DDPM on mnist5k, {args.quality_steps} steps of batch {QUALITY_BATCH}, "
            f"{args.threads} threads, mean of {len(runs)} seeds",
            "",
            "| step | " + " | ".join(f"{n}: test eps-MSE | {n}: train s" for n in (EFFICIENT, THEIRS))
            + " | loss ratio (ours / diffusers) |",
            "|---:|" + "---:|---:|" * 2 + "---:|",
            *(f"| {a[0]} | {a[2]:.4f} | {a[1]:.0f} | {b[2]:.4f} | {b[1]:.0f} | {a[2] / b[2]:.3f} |"
              for a, b in zip(eff, ref)),
            "",
        ]
        good = eff[-1][2] <= QUALITY_TOLERANCE * ref[-1][2]
        lines += [
            f"Final test loss (mean): efficient {eff[-1][2]:.4f} vs diffusers {ref[-1][2]:.4f} = {eff[-1][2] / ref[-1][2]:.3f}x "
            f"(must be <= {QUALITY_TOLERANCE}); training time {eff[-1][1]:.0f} s vs {ref[-1][1]:.0f} s "
            f"= {ref[-1][1] / eff[-1][1]:.2f}x faster. Per seed: " + "; ".join(
                f"seed {i} {run[EFFICIENT][-1][2]:.4f} vs {run[THEIRS][-1][2]:.4f}" for i, run in enumerate(runs))
            + ". Plot: `unet_speed.png`.",
            "",
        ]
        plot_quality(runs, args.out / "unet_speed.png")
    lines.append(
        f"Verdict (target >= {TARGET}x at matched parameters, with no worse loss): "
        f"{'met' if fast and good else 'NOT met'} by the efficient layout ("
        + "; ".join(f"{label}: training {rt:.2f}x, inference {ri:.2f}x" for label, rt, ri, _, _ in verdict)
        + (f"; test loss at equal steps {'within' if good else 'NOT within'} {QUALITY_TOLERANCE}x" if runs else "")
        + "). Same layout, implementation only: "
        + "; ".join(f"{label}: {rt:.2f}x / {ri:.2f}x" for label, _, _, rt, ri in verdict) + "."
    )
    lines += [
        "",
        f"## Work per image and where a training step's time goes ({work_seconds:.0f} s)",
        "",
        "Multiply-adds = FLOPs / 2 counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls "
        "and attention; norms and elementwise ops are not counted) for one image's forward. Conv share: self CPU "
        "time of convolution operators (forward and backward) over all operators in one training step (batch "
        f"{args.batch}, 1 thread, after a warm-up step) under `torch.profiler`; conv GFLOP/s: that step's counted "
        "convolution FLOPs over that time; step GFLOP/s: the step's counted FLOPs (forward and backward) over "
        "the median training step of each timing pass above.",
        "",
        "| model | conv multiply-adds per image | counted multiply-adds per image | conv share of the step | "
        "conv GFLOP/s | "
        + " | ".join(f"step GFLOP/s, {label}" for label, _, _ in results) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(results),
        *(f"| {n} | {w.conv_mac / 1e6:,.0f}M | {w.mac / 1e6:,.0f}M | {w.conv_share:.0%} | {w.conv_gflops:.1f} | "
          + " | ".join(f"{w.step_flops / statistics.median(train[n]) / 1e9:.1f}" for _, train, _ in results) + " |"
          for n, w in works.items()),
        "",
        *work_notes(works),
    ]
    if args.extra:
        for label, train, _ in results:
            lines.append(f"Channels-last ({label}): " + "; ".join(
                f"{cl} training step {statistics.median(a / b for a, b in zip(train[cl], train[base])):.2f}x the "
                f"time of {base}" for cl, base in CHANNELS_LAST.items()) + ".")
    else:
        lines.append("Channels-last variants were not run (`--extra`).")
    text = "\n".join(lines) + "\n"
    (args.out / "unet_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
