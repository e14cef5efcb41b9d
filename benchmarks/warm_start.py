"""An MAE fine-tuned through ``genlab train vit --init`` at its own and at another image size, vs a ViT from scratch.

Run with ``python benchmarks/warm_start.py``; writes ``benchmarks/results/warm_start.md``.

One ``mae`` (mae_mnist.py's CPU size) is pretrained on ``mnist5k`` at 28 x 28. Every ``vit`` below is
built by the command line's own path (``genlab.train.run.start_run``, as ``genlab train``): from the
MAE with ``--init`` at 28 x 28 (7 x 7 patches, the pretraining grid) and at 32 x 32 (8 x 8: the
position embedding resampled, bicubic), and from scratch at 32 x 32 with the same width, steps and
recipe (the fine-tuning options of ``genlab eval --probe finetune``; layer-wise lr decay only for
the pretrained ones). What it shows: the resampled encoder keeps the pretraining's gain.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from genlab.train.probe import FINETUNE_BATCH, FINETUNE_LR, FINETUNE_WEIGHT_DECAY
from genlab.train.probe import RECIPE as FINETUNE_RECIPE
from genlab.train.run import start_run
from machine import Machine
from mae_mnist import PRETRAIN, SEED, SIZE

RESULTS = Path(__file__).resolve().parent / "results"
ENCODER = {k: v for k, v in SIZE.items() if not k.startswith("decoder")}
RECIPE = dict(batch_size=FINETUNE_BATCH, lr=FINETUNE_LR, weight_decay=FINETUNE_WEIGHT_DECAY, ema_decay=0.0, seed=SEED,
              **FINETUNE_RECIPE)  # genlab eval --probe finetune's
WARMUP = 0.1  # share of the steps


def percent(share: float) -> str:
    return f"{share:.0%}"


def train(name: str, out: Path, steps: int, options: dict, image_size: int | None = None, init: Path | None = None):
    trainer = start_run(name, "mnist5k", out, {**options, "steps": steps, "ckpt_every": steps,
                                               "warmup": int(steps * WARMUP)}, image_size=image_size, init=init)
    trainer.show_progress = False
    return {"train_examples": len(trainer.data.train), **trainer.fit()}  # fit's test_examples: those scored


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine = Machine(retain_memory=True)
    work = Path(tempfile.mkdtemp(prefix="warm-start-"))
    mae = train("mae", work / "mae", args.pretrain_steps, {**SIZE, **PRETRAIN, "seed": SEED, "eval_examples": 128})
    print(f"mae pretrained: {mae['train_seconds']:.0f} s", flush=True)
    runs = [("MAE encoder, --init", 28, RECIPE, work / "mae"),
            ("MAE encoder, --init (position embedding resampled)", 32, RECIPE, work / "mae"),
            ("from scratch", 32, dict(RECIPE, layer_decay=1.0, **ENCODER, patch_size=4, global_pool="avg"), None)]
    rows = []
    for i, (what, size, options, init) in enumerate(runs):
        m = train("vit", work / f"vit-{i}", args.finetune_steps, options, image_size=size, init=init)
        rows.append((what, size, m["test_accuracy"], m["train_seconds"], m["test_examples"]))
        print(f"{what} at {size}: {m['test_accuracy']:.3f} ({m['train_seconds']:.0f} s)", flush=True)
    lines = ["# Fine-tuning an MAE through `genlab train vit --init`, at its own and another image size", "",
             machine.line(),
             f"- MAE {ENCODER['embed_dim']} x {ENCODER['depth']} (decoder {SIZE['decoder_embed_dim']} x "
             f"{SIZE['decoder_depth']}), patch 4, pretrained {args.pretrain_steps} steps of batch "
             f"{PRETRAIN['batch_size']} on the {mae['train_examples']:,} mnist5k training images at 28 x 28 "
             f"({mae['train_seconds']:.0f} s). Each ViT: {args.finetune_steps} steps of batch {RECIPE['batch_size']}, "
             f"AdamW lr {RECIPE['lr']:g} ({percent(WARMUP)} warm-up, cosine), weight decay {RECIPE['weight_decay']:g}, "
             f"layer-wise lr decay {RECIPE['layer_decay']:g} (pretrained only), "
             f"label smoothing {RECIPE['label_smoothing']:g}, random crops pad {RECIPE['crop_pad']}, all labels; test "
             f"accuracy on {rows[0][4]:,} test digits (resized like the training images); seed {SEED}.", "",
             "| ViT | image size | patch grid | test accuracy | train s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {what} | {s} x {s} | {s // 4} x {s // 4} | {acc:.3f} | {sec:.0f} |" for what, s, acc, sec, _ in rows]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "warm_start.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'warm_start.md'} (work files in {work}; {os.getloadavg()[0]:.1f} load)")


if __name__ == "__main__":
    main()
