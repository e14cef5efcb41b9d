"""MAE's claims on mnist5k: the mask ratio, normalised targets, and labels vs pretraining.

Run with ``python benchmarks/mae_mnist.py``; writes ``benchmarks/results/mae_mnist.md`` and
``mae_mnist.png``.

1. Mask ratio (MAE Fig. 5): a CPU-sized ``mae`` (ViT 128 x 4, decoder 64 x 2, patch 4) is
   pretrained on the mnist5k training images (labels unused) for the same number of steps at mask
   ratios 0.25 / 0.5 / 0.75 / 0.9 with per-patch normalised targets, and at 0.75 with raw pixels
   (MAE Table 1d); each is scored by the linear probe and k-NN on frozen features
   (``genlab.vision.probes``: BatchNorm + linear; cosine k = 20) with 100% and 10% of the labels.
2. Labels vs pretraining (ViT's data hunger; MAE Table 3's point): test accuracy of a ViT from
   scratch, a ResNet from scratch and the 0.75 MAE fine-tuned (``genlab.train.probe.fine_tune``:
   the same recipe and number of steps for all three, layer-wise lr decay for the MAE only), with
   10% and 100% of the training labels.
All runs seeded; times are this machine's, reported beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import genlab
from genlab.data import load_dataset
from genlab.data.dataset import Splits
from genlab.train import TrainConfig, Trainer
from genlab.train import probe as recipe
from genlab.train.probe import fine_tune, finetune_model
from genlab.vision.probes import KNN_K, KNN_TEMPERATURE, LinearProbeSettings, accuracy, extract, knn_predict, label_subset, linear_probe

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = (0.25, 0.5, 0.75, 0.9)
BEST = 0.75  # the paper's ratio: the model fine-tuned in part 2
SHARES = (0.1, 1.0)
SEED = 0
SIZE = dict(embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4)  # CPU-sized
PRETRAIN = dict(batch_size=128, lr=1.5e-3, warmup=100, ema_decay=0.0)
RESNET = dict(widths=(32, 64, 128), depths=(2, 2, 2))
FINETUNE = dict(label_smoothing=0.1, crop_pad=2)


def pretrain(splits: Splits, steps: int, work: Path, size: dict = SIZE, **options) -> tuple[genlab.Model, float]:
    """An ``mae`` of ``size`` (with ``options``) pretrained for ``steps``; the model and its training seconds."""
    torch.manual_seed(SEED)
    model = genlab.create("mae", data=splits, **{**size, **options})
    trainer = Trainer(model, splits, TrainConfig(steps=steps, seed=SEED, ckpt_every=steps, eval_examples=128,
                                                 log_every=50, **PRETRAIN), work / f"mae-{len(os.listdir(work))}")
    trainer.show_progress = False
    metrics = trainer.fit()
    return trainer.model.eval(), metrics["train_seconds"]


def _key(kind: str, share: float) -> str:
    return f"{kind} {share:.0%}"


def probes(model: genlab.Model, splits: Splits) -> dict[str, float]:
    """Linear-probe and k-NN test accuracy of ``model.encode`` features, with each share of the labels."""
    return feature_probes(extract(model, splits.train.x), extract(model, splits.test.x), splits)


def feature_probes(all_f: torch.Tensor, test_f: torch.Tensor, splits: Splits) -> dict[str, float]:
    """Linear-probe and k-NN test accuracy of frozen features of the training and test splits."""
    train, test = splits.train, splits.test
    out = {}
    for share in SHARES:
        idx = label_subset(train.y, share, SEED)
        f, y = all_f[idx], train.y[idx]
        head = linear_probe(f, y, train.num_classes, LinearProbeSettings(seed=SEED))
        with torch.no_grad():
            out[_key("linear", share)] = accuracy(head(test_f), test.y)
        out[_key("knn", share)] = accuracy(knn_predict(f, y, test_f, train.num_classes), test.y)
    return out


def supervised(name: str, net, splits: Splits, share: float, steps: int, work: Path) -> dict:
    idx = label_subset(splits.train.y, share, SEED)
    t0 = time.perf_counter()
    m = fine_tune(net, Splits(splits.train.subset(idx), splits.test), steps, work / f"{name}-{share:.0%}", seed=SEED)
    return dict(model=name, share=share, accuracy=m["test_accuracy"], seconds=time.perf_counter() - t0,
                examples=len(idx))


def picture(ratio_rows: list[dict], label_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    normed = [r for r in ratio_rows if r["norm_pix"]]
    for key, colour in ((_key("linear", 1.0), "C0"), (_key("knn", 1.0), "C1")):
        a.axhline(ratio_rows[0][key], color=colour, lw=0.8, ls=":")
    for key, style in [(_key(k, share), m + ("-" if share == 1 else "--")) for share in SHARES[::-1]
                       for k, m in (("linear", "o"), ("knn", "s"))]:
        a.plot([r["ratio"] for r in normed], [r[key] for r in normed], style, label=key)
    a.set_xlabel("mask ratio")
    a.set_ylabel("test accuracy")
    a.set_title("MAE on mnist5k: probes vs mask ratio (dotted: random encoder)", fontsize=10)
    a.legend(fontsize=8)
    names = list(dict.fromkeys(r["model"] for r in label_rows))
    width = 0.8 / len(SHARES)
    for i, share in enumerate(SHARES):
        vals = [next(r["accuracy"] for r in label_rows if r["model"] == n and r["share"] == share) for n in names]
        b.bar([j + i * width for j in range(len(names))], vals, width, label=f"{share:.0%} labels")
    b.set_xticks([j + width * (len(SHARES) - 1) / 2 for j in range(len(names))], names, fontsize=8)
    lo = min(r["accuracy"] for r in label_rows)
    b.set_ylim(max(0.0, lo - 0.05), 1.0)
    b.set_ylabel("test accuracy")
    b.set_title("labels vs pretraining")
    b.legend(fontsize=8, loc="upper left")  # above the lowest bars, clear of the tallest
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain-steps", type=int, default=800)
    p.add_argument("--finetune-steps", type=int, default=400)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    splits = load_dataset("mnist5k")
    work = Path(tempfile.mkdtemp(prefix="mae-mnist-"))
    load_before, t_start = os.getloadavg()[0], time.perf_counter()
    torch.manual_seed(SEED)
    untrained = genlab.create("mae", data=splits, **SIZE).eval()  # the floor: features of a random encoder
    ratio_rows, models = [dict(ratio=None, norm_pix=None, seconds=0.0, **probes(untrained, splits))], {}
    for ratio, norm_pix in [(r, True) for r in RATIOS] + [(BEST, False)]:
        model, seconds = pretrain(splits, args.pretrain_steps, work, mask_ratio=ratio, norm_pix_loss=norm_pix)
        row = dict(ratio=ratio, norm_pix=norm_pix, seconds=seconds, **probes(model, splits))
        ratio_rows.append(row)
        models[(ratio, norm_pix)] = model
        print(row, flush=True)
    label_rows = []
    best = models[(BEST, True)]
    for share in SHARES:
        torch.manual_seed(SEED)
        builders = {
            "ViT from scratch": lambda: genlab.create("vit", data=splits, embed_dim=SIZE["embed_dim"], depth=SIZE["depth"],
                                                      num_heads=SIZE["num_heads"], global_pool="avg", **FINETUNE),
            "ResNet from scratch": lambda: genlab.create("resnet", data=splits, **RESNET, **FINETUNE),
            f"MAE ({BEST}) fine-tuned": lambda: finetune_model(best, splits.train.num_classes),
        }
        for name, build in builders.items():
            torch.manual_seed(SEED)
            label_rows.append(supervised(name, build(), splits, share, args.finetune_steps, work))
            print(label_rows[-1], flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    picture(ratio_rows, label_rows, results / "mae_mnist.png")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    cfg = best.config
    lines = ["# MAE on mnist5k: mask ratio, targets, and labels vs pretraining", "",
             f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads; torch "
             f"{torch.__version__}; 1-min load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; "
             f"whole run {time.perf_counter() - t_start:.0f} s; seed {SEED}",
             f"- Pretraining: mae {cfg.embed_dim} x {cfg.depth} encoder, decoder {cfg.decoder_embed_dim} x "
             f"{cfg.decoder_depth}, patch {cfg.patch_size}, {args.pretrain_steps} steps of batch "
             f"{PRETRAIN['batch_size']} on the {len(splits.train):,} training images (labels unused), AdamW betas "
             f"{best.phases()[0].betas}, lr {PRETRAIN['lr']:g}, fp32. Probes on frozen features (average of patch "
             f"tokens): linear = BatchNorm without affine + linear layer; k-NN = cosine, k = {KNN_K}, T = "
             f"{KNN_TEMPERATURE}; test split ({len(splits.test)} digits); label shares class-stratified.", "",
             "| mask ratio | targets | pretrain s | " + " | ".join(_key(k, sh) for sh in SHARES[::-1] for k in ("linear", "k-NN"))
             + " |", "|---:|---|---:|" + "---:|" * 2 * len(SHARES)]
    for r in ratio_rows:
        cells = " | ".join(f"{r[_key(k, sh)]:.3f}" for sh in SHARES[::-1] for k in ("linear", "knn"))
        if r["ratio"] is None:
            lines.append(f"| - | none: random encoder | 0 | {cells} |")
        else:
            lines.append(f"| {r['ratio']:g} | {'normalised' if r['norm_pix'] else 'raw pixels'} | {r['seconds']:.0f} | {cells} |")
    lines += ["", f"- Labels vs pretraining: {args.finetune_steps} steps of batch {recipe.FINETUNE_BATCH} (fp32) for "
              f"every model (AdamW lr {recipe.FINETUNE_LR:g}, weight decay {recipe.FINETUNE_WEIGHT_DECAY}, label "
              f"smoothing {FINETUNE['label_smoothing']}, random crops pad {FINETUNE['crop_pad']}); the ViT is the "
              f"same ViT ({cfg.embed_dim} x {cfg.depth}, average pooling), the ResNet widths {RESNET['widths']} depths "
              f"{RESNET['depths']}; the MAE is the {BEST} model above, fine-tuned with layer-wise lr decay "
              f"{recipe.LAYER_DECAY}.", "",
              "| model | labels | labelled examples | test accuracy | seconds |", "|---|---:|---:|---:|---:|"]
    for r in label_rows:
        lines.append(f"| {r['model']} | {r['share']:.0%} | {r['examples']:,} | {r['accuracy']:.3f} | {r['seconds']:.0f} |")
    lines += ["", "![mask ratio and labels](mae_mnist.png)"]
    (results / "mae_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
