"""ViT throughput vs timm's ``VisionTransformer`` of the same config and weights, side by side.

Run with ``python benchmarks/vit_throughput.py``; writes ``benchmarks/results/vit_throughput.md``.

Two ViTs (patch 4 on 28x28, class token, 10 classes): the default 192 wide, 6 deep, 3 heads at
batch 256, and 384 x 12, 6 heads — the larger encoder of ``mae_speed.py`` — at that script's batch
of 128. Each against timm's ``VisionTransformer`` built with the same keywords, holding the same
weights (genlab loads timm's state dict unchanged): training images/s (forward, cross-entropy,
backward, fused AdamW) and inference images/s (no grad), in fp32 and (on a CPU with native bf16) under
bf16 autocast, timed alternately (median of REPEATS); genlab's logits skip the last block's work for tokens other than
the class token, exactly (``tests/test_vision_vit.py``). Achieved GFLOP/s (FLOPs counted by
``torch.utils.flop_counter``) is compared with a large matmul (2048^3) in the row's precision
(fp32, or bf16 for the bf16 rows) timed in the same rounds as the models. Profiled steps (median
of PROFILED) split the gap to that peak: the shares of the step's operator time in matrix
multiplies and in fused attention, those multiplies' own GFLOP/s (their counted FLOPs over their
time), and the share of peak the step would reach if the remaining operators (GELU, LayerNorm,
AdamW, ...) took no time, so what each costs is read off, not assumed. timm imports
torchvision: it is loaded through ``benchmarks/peers.py``; without timm the peer columns are
skipped with a message.
Targets: >= 1.0x timm; >= 0.8 of the matmul's GFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.vision import ViT
from machine import Machine, bf16_precisions
from mae_speed import CONFIGS  # the same two encoders
from peers import import_timm
from profiling import counted_flops, cpu_time_shares
from timing import WARMUP, median_times

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, mlp_ratio=4.0, qkv_bias=True,
              global_pool="token", class_token=True)
BATCHES = {"192 x 6 (default)": 256, "384 x 12": 128}
REPEATS = 15
PROFILED = 3  # profiled steps for the matmul / other split
TARGET_RATIO, TARGET_PEAK = 1.0, 0.8


def train_step(model, x, y, bf16):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # genlab train's AdamW, the same for both

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def infer_step(model, x, bf16):
    @torch.no_grad()
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            model(x)

    return step


PEAK_N = 2048
PEAK_FLOP = 2 * PEAK_N**3


def peak_matmul(bf16: bool):
    """The PEAK_N^3 matmul, in the row's precision, whose GFLOP/s is the peak; timed in the same rounds as each
    row's models, so a VM's drift over minutes moves the peak and the models alike. A bf16 row is held to a bf16
    matmul (several times an fp32 one where bf16 is native), not flattered by the fp32 one."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(PEAK_N, PEAK_N, dtype=dtype), torch.randn(PEAK_N, PEAK_N, dtype=dtype)
    return lambda: a @ b


def profiled_split(step, flop_mm: int, peak) -> tuple[float, float, float]:
    """Medians over PROFILED profiled steps, each followed by a timed peak matmul: the shares of the step's
    operator time in matrix multiplies and in fused attention, and the multiplies' GFLOP/s as a share of the
    peak timed beside them."""
    shares, attention, speeds = [], [], []
    for _ in range(PROFILED):
        t_mm, t_attn, t_other = cpu_time_shares(step, 1)
        (t_peak,) = median_times([peak], 1, warmup=0)
        total = t_mm + t_attn + t_other
        shares.append(t_mm / total)
        attention.append(t_attn / total)
        speeds.append(flop_mm / t_mm * t_peak / PEAK_FLOP)
    return statistics.median(shares), statistics.median(attention), statistics.median(speeds)


def measure(name: str, timm, repeats: int) -> list[dict]:
    """Training and inference rows of one config, fp32 and bf16: genlab, and timm beside it when present."""
    config, batch = {**COMMON, **CONFIGS[name]}, BATCHES[name]
    torch.manual_seed(0)
    ours = ViT(**config)
    peer = None
    if timm is not None:
        from timm.models.vision_transformer import VisionTransformer

        peer = VisionTransformer(**config)
        ours.load_state_dict(peer.state_dict())
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    params = sum(q.numel() for q in ours.parameters())
    rows = []
    for mode in ("train", "inference"):
        for bf16 in bf16_precisions()[0]:
            models = [ours] + ([peer] if peer is not None else [])
            for m in models:
                m.train(mode == "train")
            fns = [train_step(m, x, y, bf16) if mode == "train" else infer_step(m, x, bf16) for m in models]
            flop, flop_mm = counted_flops(fns[0])
            peak = peak_matmul(bf16)
            times = median_times(fns + [peak], repeats)
            matmul_share, attention_share, matmul_peak = profiled_split(fns[0], flop_mm, peak)
            r = dict(config=name, batch=batch, params=params, mode=mode, precision="bf16" if bf16 else "fp32",
                     ours=batch / times[0], timm=batch / times[1] if peer is not None else None,
                     gflops=flop / times[0] / 1e9, peak=PEAK_FLOP / times[-1] / 1e9,
                     matmul_share=matmul_share, attention_share=attention_share, matmul_peak=matmul_peak)
            rows.append(r)
            vs = f", timm {r['timm']:.0f} img/s ({r['ours'] / r['timm']:.2f}x)" if peer is not None else ""
            print(f"{name} {mode} {r['precision']}: ours {r['ours']:.0f} img/s{vs}, {r['gflops']:.1f} GFLOP/s, "
                  f"peak {r['peak']:.1f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine = Machine(retain_memory=True)
    timm = import_timm()
    rows = []
    for name in args.configs:
        rows += measure(name, timm, args.repeats)
    peaks = {prec: [r["peak"] for r in rows if r["precision"] == prec] for prec in ("fp32", "bf16")}
    peak_range = "; ".join(f"{prec} {min(v):.1f}-{max(v):.1f}" for prec, v in peaks.items() if v)
    lines = ["# ViT throughput: genlab vs timm VisionTransformer (same config, same weights)", "",
             machine.line(),
             bf16_precisions()[1],
             "- Peer: " + (f"timm {timm.__version__}" if timm else "timm not installed, no peer column"),
             "- Patch 4 on 1x28x28 (50 tokens); per config: "
             + "; ".join(f"{r['config']}: {r['params']:,} parameters, batch {r['batch']}"
                         for r in rows if r["mode"] == "train" and r["precision"] == "fp32")
             + f". Median of {args.repeats} after {WARMUP} warm-up, the two models and the peak matmul alternating. "
             "Training = forward, cross-entropy, backward, fused AdamW. GFLOP/s from FLOPs counted by "
             f"torch.utils.flop_counter; peak = a {PEAK_N}^3 matmul in the row's precision timed in the same rounds as each "
             f"row's models (its column; {peak_range} GFLOP/s in this run). genlab's forward runs the last block for the class "
             "token only (the same logits and gradients, tested), so it counts fewer FLOPs than timm.", "",
             f"The last four columns come from {PROFILED} profiled steps (torch.profiler, medians): the shares of "
             "operator time in matrix multiplies (mm, addmm, bmm, baddbmm, with the copies they make inside) and in fused "
             "attention (SDPA, with its kernels); those multiplies' own speed, their "
             "counted FLOPs over their time, as a share of the peak matmul timed right after each profiled step; and an "
             "estimate of the share of peak the step would reach if every other operator (GELU, LayerNorm, bias "
             "gradients, residual adds, copies, AdamW) took no time: its share of peak over the two time shares. In fp32 attention runs in the fused SDPA kernel; "
             "in bf16 its two products are bmm, inside the matmuls.", "",
             "| ViT | mode | precision | genlab img/s | timm img/s | genlab / timm | GFLOP/s | peak GFLOP/s | "
             "share of peak | step time in matmuls | in fused attention | matmuls alone, share of peak | share of peak, other operators free |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = f"{r['timm']:.0f} | {r['ours'] / r['timm']:.2f}x" if r["timm"] else "- | -"
        lines.append(f"| {r['config']} | {r['mode']} | {r['precision']} | {r['ours']:.0f} | {t} | {r['gflops']:.1f} | {r['peak']:.1f} | "
                     f"{r['gflops'] / r['peak']:.2f} | {r['matmul_share']:.2f} | {r['attention_share']:.2f} | "
                     f"{r['matmul_peak']:.2f} | {r['gflops'] / r['peak'] / (r['matmul_share'] + r['attention_share']):.2f} |")
    lines += ["", f"Targets: >= {TARGET_RATIO:.1f}x timm; >= {TARGET_PEAK} of the matmul's GFLOP/s (fp32 rows: the fp32 matmul)."]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vit_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
