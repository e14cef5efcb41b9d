"""The representation leaderboard: every registered model with an encoder, one CPU budget, the same probes.

Run with ``python benchmarks/leaderboard_representation.py``; writes
``benchmarks/results/leaderboard_representation.md``.

The generative leaderboard (``leaderboard.py``) scores samples; this one scores what a model's
``encode`` gives a downstream user. Every registered model that can encode (the supervised ViT and
ResNet, the self-supervised MAE, the VAE's posterior mean, and any family registered later, with
no change here) trains on ``mnist5k`` for the same time budget with the same trainer settings,
then its frozen test and training features are scored by the linear probe (BatchNorm without
affine + linear) and the cosine k-NN (k = 20) with 100% and 10% of the training labels, as
``mae_mnist.py`` does. The floor row probes the raw pixels. Supervised models saw every training
label while training, so their 10% columns are not a label-efficiency result; their own
classifier's test accuracy is beside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("GENLAB_HOME", tempfile.mkdtemp(prefix="genlab-leaderboard-"))

import genlab  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.registry import MODELS  # noqa: E402
from genlab.train import TrainConfig, Trainer  # noqa: E402
from genlab.vision.probes import KNN_K, KNN_TEMPERATURE, extract  # noqa: E402
from machine import Machine  # noqa: E402
from mae_mnist import RESNET, SHARES, SIZE, _key, feature_probes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
DATA = "mnist5k"
BUDGET = 150.0  # seconds of training per model
TRAIN = dict(batch_size=128, lr=1.5e-3, warmup=100, ema_decay=0.0)
VIT = {k: SIZE[k] for k in ("embed_dim", "depth", "num_heads")}
OVERRIDES = {  # CPU-sized networks: mae_mnist.py's ViT and ResNet, the generative leaderboard's VAE
    "vit": dict(VIT, global_pool="avg"), "mae": SIZE, "resnet": RESNET, "vae": dict(channels=16, latent_dim=16),
}
FAMILIES = {"Classifier": "supervised classifier", "MAE": "masked autoencoder", "VAE": "autoencoder"}
SUPERVISED = {"Classifier"}  # family base classes whose training uses the labels


def encoders() -> list[str]:
    return [name for name in MODELS.names() if "encode" in MODELS.get(name)[0].capabilities()]


def run_one(name: str, splits, budget: float, out: Path) -> dict:
    cls = MODELS.get(name)[0]
    torch.manual_seed(SEED)
    model = genlab.create(name, data=splits, **OVERRIDES.get(name, {}))
    cfg = TrainConfig(steps=10**9, time_budget=budget, seed=SEED, eval_examples=0, ckpt_every=10**9,
                      log_every=100, num_samples=16, **TRAIN)
    trainer = Trainer(model, splits, cfg, out / name)
    trainer.show_progress = False
    metrics = trainer.fit()
    model = trainer.model.eval()
    train_f, test_f = extract(model, splits.train.x), extract(model, splits.test.x)
    bases = [base.__name__ for base in cls.__mro__]
    family = next((FAMILIES[b] for b in bases if b in FAMILIES), cls.__module__.split(".")[1])
    return dict(model=name, family=family, labels="all" if set(bases) & SUPERVISED else "none",
                params=sum(p.numel() for p in model.parameters()), train_s=metrics["train_seconds"],
                steps=metrics["steps"], dim=train_f.shape[1], own=metrics.get("test_accuracy"),
                **feature_probes(train_f, test_f, splits))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model that encodes")
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds of training per model")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    machine = Machine(retain_memory=True)
    splits = load_dataset(DATA)
    work = Path(tempfile.mkdtemp(prefix="leaderboard-representation-"))
    rows = []
    for name in args.models or encoders():
        rows.append(run_one(name, splits, args.budget, work))
        print(rows[-1], flush=True)
    pixels = feature_probes(splits.train.x.flatten(1), splits.test.x.flatten(1), splits)
    cols = [_key(k, share) for share in SHARES[::-1] for k in ("linear", "knn")]
    lines = ["# Representation leaderboard: every model with an encoder, same data, same budget, same probes (CPU)",
             "", machine.line(),
             f"- Data `{DATA}`: {len(splits.train):,} training and {len(splits.test)} test digits. Each model trains "
             f"{args.budget:.0f} s (batch {TRAIN['batch_size']}, peak lr {TRAIN['lr']:g}, {TRAIN['warmup']} warm-up "
             f"steps then cosine to the budget, fp32, seed {SEED}; a family's own optimizer settings, e.g. MAE's "
             "AdamW betas, kept). Networks: "
             + "; ".join(f"{n} {', '.join(f'{k}={v}' for k, v in o.items())}" for n, o in OVERRIDES.items()) + ".",
             "- Probes on the frozen `encode` features of all training and test digits: linear = BatchNorm without "
             f"affine + linear layer; k-NN = cosine, k = {KNN_K}, T = {KNN_TEMPERATURE}; label shares "
             f"class-stratified (seed {SEED}). *labels in training*: whether the model itself was trained on the labels "
             f"(then its {min(SHARES):.0%} columns are not a label-efficiency result); *own classifier*: its head's test "
             "accuracy. "
             "Sorted by the linear probe with all labels.", "",
             "| model | family | labels in training | params | train s | steps | feature dim | "
             + " | ".join(c.replace("knn", "k-NN") for c in cols) + " | own classifier |",
             "|---|---|---|---:|---:|---:|---:|" + "---:|" * (len(cols) + 1)]
    for r in sorted(rows, key=lambda r: -r[cols[0]]):
        own = "-" if r["own"] is None else f"{r['own']:.3f}"
        lines.append(f"| {r['model']} | {r['family']} | {r['labels']} | {r['params']:,} | {r['train_s']:.0f} | "
                     f"{r['steps']} | {r['dim']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + f" | {own} |")
    lines.append(f"| *raw pixels (floor)* | | | 0 | 0 | 0 | {splits.train.x[0].numel()} | "
                 + " | ".join(f"{pixels[c]:.3f}" for c in cols) + " | - |")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "leaderboard_representation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
