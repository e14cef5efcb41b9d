"""``genlab train | sample | eval | features | list`` — the command line.

Every mistake a user can make ends as one line ``error: <what to fix>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from genlab.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


CLIP_HELP = ("clamp each denoised estimate to the image range [-1, 1] (DDPM's clip_denoised, diffusers' clip_sample; "
             "DDIM uses the clipped estimate's noise)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genlab", description="Train, sample and evaluate deep generative models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model", description="Train MODEL on a data set; key=value pairs set model or training options.")
    t.add_argument("model", help="model name (see 'genlab list')")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="model or training option")
    t.add_argument("--recipe", help="YAML file of key: value options (command-line options win)")
    t.add_argument("--data", help="built-in data set name or a path (folder, .npz, IDX, CIFAR-10); default mnist5k")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="training steps (on --resume: the new total)")
    budget.add_argument("--time-budget", help="stop after this long: 300, 90s, 5m, 1h (on --resume: this much more)")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--image-size", type=_positive_int, help="resize images to N x N")
    t.add_argument("--out", help="run folder (default runs/MODEL)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--init", metavar="SOURCE", help="start from trained weights (and their options): a run "
                   "folder, a saved model folder (genlab export's) or a .safetensors file of the model's keys")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU and CUDA)")
    t.add_argument("--fp16", action="store_true", help="float16 autocast with a gradient scaler (CUDA)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained model")
    s.add_argument("path", help="run folder (runs/NAME) or saved model folder")
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--out", default="samples.png", help="output .png (picture) or .npz (raw samples)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--batch-size", type=_positive_int, help="samples per forward batch (does not change results)")
    d = s.add_argument_group("diffusion sampling (defaults come from the model)")
    d.add_argument("--sampler", help="euler | heun | edm | ddim | ddpm | dpmpp_2m")
    d.add_argument("--steps", type=_positive_int, help="sampling steps")
    d.add_argument("--grid", help="sigma grid: karras | ddpm | uniform_t")
    d.add_argument("--spacing", help="ddpm grid timestep spacing: leading | trailing | linspace")
    d.add_argument("--eta", type=float, help="ddim stochasticity in [0, 1]")
    d.add_argument("--churn", type=float, dest="S_churn", help="edm sampler S_churn")
    d.add_argument("--guidance", type=float, help="classifier-free guidance scale (class-conditional models)")
    d.add_argument("--clip-denoised", action=argparse.BooleanOptionalAction, help=CLIP_HELP)
    d.add_argument("--label", type=int, help="class label for every sample (class-conditional models)")
    s.add_argument("--temperature", type=float, help="flows: scale of the base draws (Glow; default 1)")

    e = sub.add_parser("eval", help="score a trained model's samples (FD, KID, precision/recall, ...)",
                       description="Sample once (cached), compute the metrics, print them and merge them into "
                                   "the run's metrics.json under the sampling settings.")
    e.add_argument("path", help="run folder (runs/NAME) or saved model folder (then pass --data)")
    e.add_argument("--metrics", help="comma list of fd,kid,pr,dc,vendi,memo,cls,modes,w2,ll,nll (default: all that apply)")
    e.add_argument("-n", type=_positive_int, default=1000, help="samples to score (and test examples for nll)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--data", help="data to compare with (default: the run's)")
    e.add_argument("--features", help="digits28 | digits8 | pixels | FILE.safetensors | FILE.pt (TorchScript); "
                                      "default: the network made for the data")
    e.add_argument("--features-size", type=_positive_int, help="TorchScript input size (images are resized)")
    e.add_argument("--features-channels", type=int, choices=(1, 3), help="TorchScript input channels")
    e.add_argument("--features-range", default="-1,1", help="TorchScript input value range, e.g. 0,255")
    e.add_argument("--batch-size", type=_positive_int, default=250)
    e.add_argument("--device", default="auto")
    e.add_argument("--no-progress", action="store_true")
    ep = e.add_argument_group("representation probes (vit, resnet, mae runs; instead of sample metrics)")
    ep.add_argument("--probe", help="linear | knn | finetune: accuracy on the test split")
    ep.add_argument("--labels", help="share of the training labels the probe uses, e.g. 10%% (default 100%%)")
    ep.add_argument("--probe-epochs", type=_positive_int, help="epochs of the linear probe (100) or fine-tuning (30)")
    es = e.add_argument_group("sampling (defaults come from the model)")
    es.add_argument("--sampler")
    es.add_argument("--steps", type=_positive_int)
    es.add_argument("--guidance", type=float)
    es.add_argument("--clip-denoised", action=argparse.BooleanOptionalAction, help=CLIP_HELP)

    f = sub.add_parser("features", help="feature networks for the metrics")
    fsub = f.add_subparsers(dest="features_command", required=True, parser_class=_Parser)
    ft = fsub.add_parser("train", help="train a feature network on labelled data and register it for that data")
    ft.add_argument("--data", required=True, help="labelled data: built-in name or a path (class subfolders, .npz with y, ...)")
    ft.add_argument("--image-size", type=_positive_int, help="resize images to N x N")
    ft.add_argument("--out", help="safetensors file (default: GENLAB_HOME/features/<data hash>.safetensors)")
    ft.add_argument("--epochs", type=_positive_int, default=30)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--no-register", action="store_true", help="do not make it the default extractor for this data")
    ft.add_argument("--no-progress", action="store_true")

    x = sub.add_parser("export", help="write a vit or mae run's network as a plain ViT (genlab and timm weights)",
                       description="Write DIR: a saved vit model (config.json + model.safetensors) and timm.safetensors "
                                   "(timm VisionTransformer keys; its keyword arguments in the metadata). An mae run "
                                   "exports its encoder, without a head.")
    x.add_argument("path", help="run folder (runs/NAME) or saved model folder")
    x.add_argument("--out", required=True, help="folder to write (replaced atomically if it exists)")
    x.add_argument("--global-pool", help="avg | token: pooling of an mae's encoder (default avg)")

    sub.add_parser("list", help="list models and data sets")
    return p


def cmd_train(args: argparse.Namespace) -> None:
    from genlab.config import load_yaml, parse_key_values
    from genlab.train.config import parse_duration
    from genlab.train.run import describe, start_run
    from genlab.train.trainer import UNBOUNDED

    overrides: dict[str, object] = load_yaml(args.recipe) if args.recipe else {}
    overrides.update(parse_key_values(args.overrides))
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    budget = parse_duration(args.time_budget) if args.time_budget is not None else None
    if budget is not None:
        overrides["time_budget"] = budget
        if not args.resume:
            overrides.setdefault("steps", UNBOUNDED)
    for flag in ("bf16", "fp16"):
        if getattr(args, flag):
            overrides[flag] = True
    out = Path(args.out or f"runs/{args.model}")
    trainer = start_run(args.model, args.data, out, overrides, image_size=args.image_size, resume=args.resume,
                        init=args.init)
    if args.no_progress:
        trainer.show_progress = False
    if trainer.main:
        print(describe(trainer), file=sys.stderr)
        if args.resume and budget is not None:
            total = trainer.cfg.time_budget
            print(f"resuming after {total - budget:.0f} s of training: --time-budget {args.time_budget} is this "
                  f"invocation's, so training stops at {total:.0f} s in all", file=sys.stderr)
    metrics = trainer.fit(resume=args.resume)
    if not trainer.main:
        return
    summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    stop = ""
    if metrics["stopped_by"] == "time_budget" and "steps_target" in metrics:
        stop = (f"; the {trainer.cfg.time_budget:.4g} s time budget ended training at step {metrics['steps']} of "
                f"{metrics['steps_target']}")
    print(f"done: {out}/{stop} ({summary})")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from genlab.report.grid import class_columns, picture_problem, save_samples
    from genlab.train.saved import load_run_model
    from genlab.train.trainer import resolve_device

    out = Path(args.out)
    if out.suffix not in (".png", ".npz"):
        raise UserError(f"--out {args.out!r}: use a .png (picture) or .npz (raw samples) file name")
    model = load_run_model(args.path, device=resolve_device(args.device)).eval()
    if not model.can("sample"):
        raise UserError(f"model {model.name!r} does not sample (it can: {', '.join(model.capabilities()) or 'nothing'})")
    problem = picture_problem(tuple(model.config.data_shape))
    if out.suffix == ".png" and problem:
        raise UserError(problem)
    names = ("batch_size", "sampler", "steps", "grid", "spacing", "eta", "S_churn", "guidance", "clip_denoised",
             "temperature")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.label is not None:
        options["class_labels"] = torch.full((args.n,), args.label)
    x = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed), **options).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, x=x.numpy())
    else:
        columns = None if args.label is not None else class_columns(model.config.num_classes)
        save_samples(x, out, title=f"{model.name}, seed {args.seed}", nrow=columns)
    nfe = f" ({model.last_nfe} network evaluations)" if getattr(model, "last_nfe", 0) else ""
    print(f"wrote {args.n} samples to {out}{nfe}")


def cmd_eval(args: argparse.Namespace) -> None:
    from genlab.train.assess import assess
    from genlab.train.trainer import resolve_device

    if args.probe is not None or args.labels is not None or args.probe_epochs is not None:
        return cmd_probe(args)
    try:
        lo, hi = (float(v) for v in args.features_range.split(","))
    except ValueError:
        raise UserError(f"--features-range {args.features_range!r}: give two numbers, e.g. 0,255") from None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    options = {k: getattr(args, k) for k in ("sampler", "steps", "guidance", "clip_denoised")
               if getattr(args, k) is not None}
    key, results = assess(args.path, metrics, args.n, seed=args.seed, options=options, features=args.features,
                          data=args.data, batch_size=args.batch_size, device=resolve_device(args.device),
                          show_progress=not args.no_progress, features_size=args.features_size,
                          features_channels=args.features_channels, features_range=(lo, hi))
    print(f"{args.path} ({key}):")
    for k, v in results.items():
        if k.startswith("floor_"):
            continue
        floor = results.get(f"floor_{k}")
        shown = f"{v:.5g}" if isinstance(v, float) else str(v)
        print(f"  {k:<24} {shown}" + (f"   (test data: {floor:.5g})" if isinstance(floor, (int, float)) else ""))
    print(f"merged into {Path(args.path) / 'metrics.json'} under eval / {key!r}")


def cmd_probe(args: argparse.Namespace) -> None:
    from genlab.train.probe import probe
    from genlab.train.trainer import resolve_device

    if args.probe is None:
        raise UserError("--labels and --probe-epochs go with --probe linear|knn|finetune")
    if args.metrics:
        raise UserError("--probe measures a representation; --metrics scores samples: run them separately")
    key, results = probe(args.path, args.probe, args.labels, seed=args.seed, epochs=args.probe_epochs,
                         data=args.data, batch_size=args.batch_size, device=resolve_device(args.device),
                         show_progress=not args.no_progress)
    print(f"{args.path} ({key}): accuracy {results['accuracy']:.4f} on {results['test_examples']} test examples, "
          f"{results['train_examples']} labelled training examples")
    print(f"merged into {Path(args.path) / 'metrics.json'} under probe / {key!r}")


def cmd_features(args: argparse.Namespace) -> None:
    import torch

    from genlab.data import load_dataset
    from genlab.metrics.feature_net import FeatureTraining, accuracy, save_feature_net, train_feature_net
    from genlab.metrics.features import data_fingerprint, genlab_home, register_for_data

    data = load_dataset(args.data, image_size=args.image_size)
    train, test = data.train, data.test
    if train.kind != "image" or train.y is None or train.num_classes < 2:
        raise UserError(f"--data {args.data}: a feature network needs labelled images with at least 2 classes "
                        "(an image folder with one subfolder per class, or an .npz with x and y)")
    out = Path(args.out) if args.out else genlab_home() / "features" / f"{data_fingerprint(train.x)}.safetensors"
    if out.suffix != ".safetensors":
        raise UserError(f"--out {str(out)!r}: use a .safetensors file name")
    settings = FeatureTraining(epochs=args.epochs, seed=args.seed)
    net = train_feature_net(train.x, train.y, train.num_classes, settings, show_progress=not args.no_progress)
    acc = accuracy(net, test.x, test.y)
    info = {"data": args.data, "image_size": args.image_size, "test_accuracy": acc, "test_examples": len(test),
            "train_examples": len(train), "epochs": args.epochs, "seed": args.seed, "torch": torch.__version__}
    save_feature_net(net, out, list(train.classes), info)
    where = ""
    if not args.no_register:
        register_for_data(out, train.x)
        where = f"; registered as the feature network of {args.data}"
    print(f"wrote {out}: test accuracy {acc:.4f} on {len(test)} examples{where}")


def cmd_export(args: argparse.Namespace) -> None:
    from genlab.train.saved import load_run_model
    from genlab.vision.export import export_vit

    vit = export_vit(load_run_model(args.path), args.out, args.global_pool)
    cfg = vit.config
    print(f"wrote {args.out}: vit {cfg.embed_dim} x {cfg.depth}, patch {cfg.patch_size}, {cfg.global_pool} pooling, "
          f"{cfg.num_classes or 'no'} classes; model.safetensors (genlab) and timm.safetensors (timm keys + config)")


def cmd_list(args: argparse.Namespace) -> None:
    from genlab.data import DATASETS
    from genlab.registry import MODELS

    print("models (what each can do beyond training):")
    for name in MODELS.names():
        cls, _ = MODELS.get(name)
        print(f"  {name:<14} {MODELS.help(name)} [{', '.join(cls.capabilities())}]")
    print("data sets (or a path: image folder, .npz, MNIST IDX, CIFAR-10 batches):")
    for name in DATASETS.names():
        print(f"  {name:<14} {DATASETS.help(name)}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        stray = [a for a in extra if a.startswith("-") or "=" not in a or args.command != "train"]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
        import genlab  # noqa: F401  (registers every model family)

        commands = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "features": cmd_features,
                    "export": cmd_export, "list": cmd_list}
        commands[args.command](args)
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: rank 0 says why
            print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
