"""MAE's decoder-depth ablation (MAE Table 1a) at genlab's default ``mae`` on mnist5k.

Run with ``python benchmarks/mae_decoder.py``; writes ``benchmarks/results/mae_decoder.md``.

The paper's decoder depth 1 / 2 / 4 / 8 / 12 gives linear probes of 65.5 / 70.0 / 71.9 / 73.5 /
73.3 (ViT-L): a deeper decoder leaves the encoder's last layers more abstract, so probing gains,
while fine-tuning hardly changes; a shallower one is faster (Table 2: 3.7x vs 2.8x). This run
pretrains the default ``mae`` (ViT 192 x 6, decoder 96 wide, patch 4, mask ratio 0.75, normalised
targets) with each decoder depth for the same number of steps, seeded alike, and scores the
frozen encoder with the linear probe and k-NN at 100% and 10% of the labels (as
``benchmarks/mae_mnist.py``), beside the training seconds per step: the evidence for the default
decoder depth.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import genlab
from genlab.data import load_dataset
from genlab.vision.probes import KNN_K, KNN_TEMPERATURE

from machine import Machine
from mae_mnist import SEED, SHARES, _key, pretrain, probes

RESULTS = Path(__file__).resolve().parent / "results"
DEPTHS = (1, 2, 4)
PAPER = {1: 65.5, 2: 70.0, 4: 71.9, 8: 73.5, 12: 73.3}  # MAE Table 1a, linear probe (../shared/PAPERS.md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain-steps", type=int, default=500)
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    splits = load_dataset("mnist5k")
    work = Path(tempfile.mkdtemp(prefix="mae-decoder-"))
    machine = Machine()
    default = genlab.create("mae", data=splits).config
    rows = []
    for depth in args.depths:
        model, seconds = pretrain(splits, args.pretrain_steps, work, size={}, decoder_depth=depth)
        rows.append(dict(depth=depth, seconds=seconds, params=sum(p.numel() for p in model.parameters()),
                         **probes(model, splits)))
        print(rows[-1], flush=True)
    keys = [(k, sh) for sh in SHARES[::-1] for k in ("linear", "knn")]
    lines = ["# MAE decoder depth on mnist5k (MAE Table 1a) at the default mae", "", f"{machine.line()}; seed {SEED}",
             f"- Pretraining: the default mae ({default.embed_dim} x {default.depth} encoder, decoder "
             f"{default.decoder_embed_dim} wide, patch {default.patch_size}, mask ratio {default.mask_ratio}, "
             f"normalised targets: {default.norm_pix_loss}), {args.pretrain_steps} steps as benchmarks/mae_mnist.py "
             f"(fp32); probes on frozen features: linear = BatchNorm without affine + linear layer, k-NN = cosine, "
             f"k = {KNN_K}, T = {KNN_TEMPERATURE}; test split ({len(splits.test)} digits). The default decoder depth "
             f"is {default.decoder_depth}.", "",
             "| decoder depth | parameters | pretrain s | ms / step | "
             + " | ".join(_key("k-NN" if k == "knn" else k, sh) for k, sh in keys) + " | paper linear (ViT-L) |",
             "|---:|---:|---:|---:|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        cells = " | ".join(f"{r[_key(k, sh)]:.3f}" for k, sh in keys)
        paper = f"{PAPER[r['depth']]}" if r["depth"] in PAPER else "-"
        lines.append(f"| {r['depth']} | {r['params']:,} | {r['seconds']:.0f} | "
                     f"{r['seconds'] / args.pretrain_steps * 1e3:.0f} | {cells} | {paper} |")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mae_decoder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
