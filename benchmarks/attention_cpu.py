"""Attention on the CPU: PyTorch's fused SDPA kernel vs the explicit softmax(q k^T / sqrt(d)) v.

Run with ``python benchmarks/attention_cpu.py``; writes ``benchmarks/results/attention_cpu.md``.

``genlab.nn.attention.attention`` takes the explicit form for bf16 on the CPU for
sequences up to ``CPU_BF16_EXPLICIT_MAX_TOKENS`` tokens and
``F.scaled_dot_product_attention`` otherwise (fp32, CUDA). This script is the evidence for that
rule: forward + backward of one attention call, batch x heads x tokens x head
width as genlab's ViT / MAE / UNet use them, the two forms timed alternately (median of REPEATS),
in fp32 and bf16, with the largest output difference between them. The explicit form's softmax
reduces rows shorter than a vector register over a leading dimension (``softmax_rows``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.nn.attention import CPU_BF16_EXPLICIT_MAX_TOKENS, explicit_attention
from machine import Machine
from timing import WARMUP, median_times

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = [(128, 3, 13, 64), (128, 4, 50, 24), (256, 3, 50, 64), (64, 4, 100, 32), (32, 6, 197, 64),
          (16, 4, 400, 32), (8, 4, 1024, 64)]  # MAE encoder / decoder, ViT, UNet 10x10 / 14x14 / 20x20 / 32x32
REPEATS = 15


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine = Machine()
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(shape, generator=g).to(dtype).requires_grad_() for _ in range(3))
            grad = torch.randn(shape, generator=g).to(dtype)

            def run(fn):
                return lambda: fn(q, k, v).backward(grad)

            t_fused, t_explicit = median_times([run(F.scaled_dot_product_attention), run(explicit_attention)], args.repeats)
            with torch.no_grad():
                diff = (F.scaled_dot_product_attention(q, k, v).float() - explicit_attention(q, k, v).float()).abs().max()
            rows.append(dict(dtype=str(dtype).split(".")[1], shape=shape, fused=t_fused, explicit=t_explicit,
                             diff=diff.item()))
            print(rows[-1], flush=True)
    lines = ["# Attention on the CPU: fused SDPA vs explicit softmax(q k^T / sqrt(d)) v", "", machine.line(),
             f"- Forward + backward of one call, median of {args.repeats} after {WARMUP} warm-up, the two forms "
             f"alternating. genlab takes the explicit form on the CPU in bf16 up to "
             f"{CPU_BF16_EXPLICIT_MAX_TOKENS} tokens, the fused one otherwise.", "",
             "| dtype | batch x heads x tokens x width | fused ms | explicit ms | fused / explicit | max difference |"
             " genlab uses |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        limit = CPU_BF16_EXPLICIT_MAX_TOKENS if r["dtype"] == "bfloat16" else 0
        lines.append(f"| {r['dtype']} | {' x '.join(map(str, r['shape']))} | {r['fused'] * 1e3:.2f} | "
                     f"{r['explicit'] * 1e3:.2f} | {r['fused'] / r['explicit']:.2f}x | {r['diff']:.1e} | "
                     f"{'explicit' if r['shape'][2] <= limit else 'fused'} |")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
