"""``genlab eval RUN_DIR``: sample once (cached), score with every metric, merge into metrics.json.

Samples are cached in ``RUN_DIR/eval/`` keyed by the model's weights and config (its sampling
defaults), the sampling settings other than those defaults, the count and the seed, so re-scoring
with other metrics or another extractor samples nothing. The results go into ``metrics.json``
under ``"eval"``, keyed by the same settings, beside the training metrics.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.atomic import readable_dir, write_text_atomic
from genlab.config import to_dict
from genlab.data import load_dataset
from genlab.data.dataset import Splits
from genlab.errors import UserError
from genlab.metrics.features import get_extractor
from genlab.metrics.suite import check_metrics, default_metrics, evaluate_samples, save_memorization_pairs
from genlab.model import Model
from genlab.train.evaluate import evaluate
from genlab.train.saved import RUN_FILE, load_run_model

NLL = "nll"


def run_data(path: Path, data: str | None) -> Splits:
    """The run's data (from its config.json), or ``data`` when given (required for a bare model folder)."""
    run_file = path / RUN_FILE
    saved = json.loads(run_file.read_text()) if run_file.is_file() else {}
    if data is not None:
        return load_dataset(data)
    if "data" not in saved:
        raise UserError(f"{str(path)!r} is a saved model, not a run: say which data to compare with, --data NAME")
    return load_dataset(saved["data"], image_size=saved.get("image_size"))


def _weights_hash(path: Path) -> str:
    for f in (readable_dir(path / "model") / "model.safetensors", readable_dir(path) / "model.safetensors"):
        if f.is_file():
            return hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    ckpts = sorted((path / "checkpoints").glob("step_*/ema.safetensors"), key=lambda p: int(p.parent.name[5:]))
    return hashlib.sha256(ckpts[-1].read_bytes()).hexdigest()[:16] if ckpts else "unknown"


def _kind(value: Any) -> type | None:
    return next((k for k in (bool, int, float, str) if isinstance(value, k)), None)  # bool before int


def at_default(value: Any, default: Any) -> bool:
    """Whether a sampling option given as ``value`` draws what its ``default`` draws, so one cache
    key holds both: equal and of the same kind (an int for a float too; 1 is not True, a tensor never)."""
    kinds = {_kind(value), _kind(default)}
    return None not in kinds and (len(kinds) == 1 or kinds == {int, float}) and value == default


def settings_key(n: int, seed: int, options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted({**options, "n": n, "seed": seed}.items()))


@torch.no_grad()
def draw(model: Model, n: int, seed: int, options: dict[str, Any], batch_size: int,
         show_progress: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples in batches (progress bar) and the classes they were drawn for (conditional models)."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    classes = model.sample_classes(n)
    parts = []
    with tqdm(total=n, desc=f"sample {model.name}", unit="sample", disable=not show_progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            kw = dict(options)
            if classes is not None:
                kw["class_labels"] = classes[start:stop]
            parts.append(model.sample(stop - start, generator=g, **kw).float().cpu())
            bar.update(stop - start)
    return torch.cat(parts), classes


def assess(path: str | Path, metrics: list[str] | None = None, n: int = 1000, *, seed: int = 0,
           options: dict[str, Any] | None = None, features: str | None = None, data: str | None = None,
           batch_size: int = 250, device: str | torch.device = "cpu", show_progress: bool = True,
           features_size: int | None = None, features_channels: int | None = None,
           features_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[str, dict[str, Any]]:
    """Score a run (or saved model) folder; returns the settings key and the results."""
    path = Path(path)
    model = load_run_model(path, device=device).eval()
    defaults = model.sample_defaults()
    options = {k: v for k, v in (options or {}).items() if not (k in defaults and at_default(v, defaults[k]))}
    splits = run_data(path, data)
    if tuple(splits.train.shape) != tuple(model.config.data_shape):
        raise UserError(f"the model makes examples of shape {tuple(model.config.data_shape)} but data "
                        f"{splits.train.name!r} holds {splits.train.shape}")
    extractor = get_extractor(features, splits.train.x, size=features_size, channels=features_channels,
                              value_range=features_range)
    names = list(metrics) if metrics else default_metrics(splits.train, extractor) + ([NLL] * model.can("log_prob"))
    want_nll = NLL in names
    sample_names = check_metrics([m for m in names if m != NLL], splits.train, extractor, n)
    if want_nll and not model.can("log_prob"):
        raise UserError(f"nll needs a model with a likelihood; {model.name!r} can: {', '.join(model.capabilities())}")
    if sample_names and not model.can("sample"):
        raise UserError(f"model {model.name!r} does not sample; of these metrics only nll applies to it")
    key = settings_key(n, seed, options)
    results: dict[str, Any] = {}
    out_dir = path / "eval"
    if sample_names:
        config = json.dumps(to_dict(model.config), sort_keys=True)  # its sampling defaults (sampler, clip, ...)
        tag = hashlib.sha256(f"{_weights_hash(path)} {config} {key}".encode()).hexdigest()[:12]
        cache = out_dir / f"samples-{tag}.npz"
        if cache.is_file():
            stored = np.load(cache)
            samples = torch.from_numpy(stored["x"])
            classes = torch.from_numpy(stored["classes"]) if "classes" in stored else None
        else:
            samples, classes = draw(model, n, seed, options, batch_size, show_progress)
            out_dir.mkdir(parents=True, exist_ok=True)
            arrays = {"x": samples.numpy()} | ({"classes": classes.numpy()} if classes is not None else {})
            np.savez(out_dir / f".{cache.stem}.tmp.npz", **arrays)
            (out_dir / f".{cache.stem}.tmp.npz").replace(cache)
        results, memo = evaluate_samples(samples, splits, extractor, sample_names, requested=classes,
                                         show_progress=show_progress)
        if memo is not None:
            pairs = out_dir / f"memorization-{tag}.png"
            save_memorization_pairs(memo, samples, splits.train.x, pairs)
            results["memorization_png"] = str(pairs.relative_to(path))
    if want_nll:
        lik = evaluate(model, splits.test, batch_size, n, show_progress=show_progress)
        results.update(nll_nats=lik["nll_nats"], bits_per_dim=lik["bits_per_dim"], nll_examples=lik["test_examples"])
    merge_results(path / "metrics.json", "eval", key, results)
    return key, results


def merge_results(metrics_file: Path, section: str, key: str, results: dict[str, Any]) -> None:
    """Add ``results`` under ``section`` / ``key`` in metrics.json (kept when other keys are re-scored)."""
    data = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    data.setdefault(section, {})
    data[section][key] = {**data[section].get(key, {}), **results}
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(metrics_file, json.dumps(data, indent=2))
