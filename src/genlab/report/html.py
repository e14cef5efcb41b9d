"""The run report: one self-contained HTML page with metrics, loss curves and samples."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence


def plot_curves(log_path: Path, png: Path) -> bool:
    """Plot every logged loss term against the step; False when the log is empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln] if log_path.is_file() else []
    skip = ("step", "time", "spike", "nan_skipped")
    keys = [k for k in rows[0] if k not in skip and k.rsplit("/", 1)[-1] not in ("lr", "grad_norm")] if rows else []
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), dpi=100, squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r.get(k) for r in rows], lw=1)
        ax.set_title(k)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return True


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def write_report(run_dir: Path, metrics: dict[str, Any], title: str, notes: Sequence[str] = ()) -> Path:
    """Write ``report.html`` (and ``curves.png``) in ``run_dir``; ``notes`` are shown first, as warnings."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f'<p style="background:#fff3cd;padding:6px">Note: {html.escape(n)}</p>' for n in notes]
    parts.append("<h2>Test metrics</h2><table>")
    parts += [f"<tr><td>{html.escape(k)}</td><td>{v:.5g}</td></tr>" if isinstance(v, float)
              else f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in metrics.items()]
    parts.append("</table>")
    if plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png"):
        parts += ["<h2>Training curves</h2>", _img(run_dir / "curves.png")]
    if (run_dir / "samples.png").is_file():
        parts += ["<h2>Samples (EMA weights)</h2>", _img(run_dir / "samples.png")]
    if (run_dir / "reconstructions.png").is_file():
        parts += ["<h2>Test images and what the model makes of them (one row each)</h2>",
                  _img(run_dir / "reconstructions.png")]
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:2px 12px}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    out = run_dir / "report.html"
    out.write_text(page)
    return out
