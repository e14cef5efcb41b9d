"""genlab UNet vs diffusers UNet2DModel: training img/s and inference ms per NFE on CPU.

Both networks get the same layout, so their parameter counts match exactly (6,469,889):
widths (64, 128, 128) at 28x28, 14x14, 7x7; two ResBlocks per level on the way down and three
on the way up; self-attention (head dim 64) after every ResBlock of the 7x7 level and in the
middle block; GroupNorm(32); stride-2 conv down, nearest 2x + conv up. diffusers handles
28x28 directly (28 -> 14 -> 7), so nothing is padded.

(a) training: forward, MSE against random targets, backward, AdamW step; batch 64, 1x28x28.
(b) inference: one forward under ``torch.no_grad`` (one NFE); batch 64.
The models are timed interleaved (A, B, A, B, ...) after warm-up rounds; medians are reported.
Two passes: wall clock with ``--threads`` (default: all CPUs), then process CPU time with one
thread, which barely moves when other jobs share the machine. ``--extra`` adds both models in
channels-last memory format. Writes ``benchmarks/results/unet_speed.md``.

    python benchmarks/unet_speed.py [--repeats 5] [--extra] [--no-cpu-time]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning
# threads waiting for a preempted sibling multiply step times erratically (set it to override).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from genlab.nn.unet import UNet, UNetConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "unet_speed.md"
TARGET = 1.3
OURS, THEIRS = "genlab UNet", "diffusers UNet2DModel"
NOTES = [
    "Why the gap is small: convolutions are ~85% of a training step in both networks (torch",
    "profiler, 1 thread) and oneDNN runs them equally well. Ours does 6% fewer conv",
    "multiply-adds (1,036M vs 1,100M per image: each upsampling conv runs as a 2x2 conv at the",
    "low resolution, 1.7x faster for that layer) and fewer elementwise passes; with GroupNorm",
    "removed ours reaches only ~1.2x, so 1.3x is out of reach at an identical layout.",
    "Channels-last (the extra rows of `--extra`) is slower on this CPU for both: GroupNorm.",
]


Net = tuple[nn.Module, Callable[[Tensor, Tensor], Tensor]]


def build_ours(channels_last: bool = False) -> Net:
    cfg = UNetConfig(
        in_channels=1, channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attn_levels=(-1,),
        attn_head_dim=64, channels_last=channels_last,
    )
    net = UNet(cfg)
    return net, net


def build_diffusers(channels_last: bool = False) -> Net:
    from diffusers import UNet2DModel

    net = UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(64, 128, 128),
        layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=64,
        norm_num_groups=32,
    )
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, lambda x, t: net(x, t).sample


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(
    nets: dict[str, Net], batch: int, size: int, repeats: int, warmup: int,
    clock: Callable[[], float],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per training step and per inference forward, models interleaved per repeat."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, size, size, generator=gen)
    target = torch.randn(batch, 1, size, size, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen).float()
    opts = {name: torch.optim.AdamW(net.parameters(), lr=1e-4) for name, (net, _) in nets.items()}

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-cpu-time", action="store_true", help="skip the 1-thread CPU-time pass")
    ap.add_argument("--extra", action="store_true", help="add channels-last variants of both")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.manual_seed(0)

    builders = {OURS: build_ours, THEIRS: build_diffusers}
    if args.extra:
        builders["genlab UNet (channels_last)"] = lambda: build_ours(channels_last=True)
        builders["diffusers (channels_last)"] = lambda: build_diffusers(channels_last=True)
    nets = {name: b() for name, b in builders.items()}
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
        train, inf = measure(nets, args.batch, args.size, args.repeats, args.warmup, clock)
        results.append((label, train, inf))
    elapsed = time.perf_counter() - start
    load_after = os.getloadavg()

    lines = [
        "# UNet speed: genlab vs diffusers (CPU)",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"diffusers {__import__('diffusers').__version__}, Python {platform.python_version()}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
        f"- Load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)}: other jobs shared the CPUs when > 0; "
        "interleaving spreads that over both models, the 1-thread CPU-time pass is barely affected",
        f"- Input {args.batch}x1x{args.size}x{args.size} fp32; {args.warmup} warm-up round(s) "
        f"excluded; median of {args.repeats} interleaved repeats; whole run {elapsed:.0f} s",
        "- Training step: forward, MSE to random targets, backward, AdamW(lr=1e-4) step. "
        "Inference: one forward under no_grad (= 1 NFE).",
        "- Same layout for both: widths (64, 128, 128) at 28/14/7 px, 2 ResBlocks per level down "
        "and 3 up, attention (head dim 64) at 7x7 and in the middle block, GroupNorm(32); "
        "diffusers runs 28x28 natively (28 -> 14 -> 7), no padding.",
        "",
    ]
    verdict = []
    for label, train, inf in results:
        img_s = {n: args.batch / statistics.median(v) for n, v in train.items()}
        ms = {n: 1000 * statistics.median(v) for n, v in inf.items()}
        r_train, r_inf = img_s[OURS] / img_s[THEIRS], ms[THEIRS] / ms[OURS]
        verdict.append((label, r_train, r_inf))
        lines += [
            f"## {label}",
            "",
            "| model | params | train img/s | ms per NFE |",
            "|---|---:|---:|---:|",
            *(f"| {n} | {params[n]:,} | {img_s[n]:.1f} | {ms[n]:.0f} |" for n in nets),
            "",
            f"Ours / theirs: training **{r_train:.2f}x**, inference **{r_inf:.2f}x** "
            f"(target >= {TARGET}x).",
            "",
        ]
    met = all(rt >= TARGET and ri >= TARGET for _, rt, ri in verdict)
    lines.append(f"Verdict: target {'met' if met else 'NOT met'} (" + "; ".join(
        f"{label}: {rt:.2f}x / {ri:.2f}x" for label, rt, ri in verdict) + ").")
    lines += ["", *NOTES]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
