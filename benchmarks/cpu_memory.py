"""``genlab train`` on the CPU with glibc's default malloc vs with freed memory retained, side by side.

Run with ``python benchmarks/cpu_memory.py``; writes ``benchmarks/results/cpu_memory.md``.

The trainer calls :func:`genlab.train.cpu_memory.retain_freed_memory` on the CPU: glibc then stops
mapping each step's activations above 32 MB anew and faulting their pages in. Each measurement
is a fresh process running the real ``genlab train`` on mnist5k (the setting is process-wide and
cannot be undone in place, so the baseline process replaces the call with a no-op); its
training steps are timed one by one, with the page faults (``ru_minflt``) during each, and the
first WARMUP_STEPS are dropped (the heap settles in them). The two kinds of process alternate,
which one goes first flipping each round; the table gives medians over the rounds of each
process's median step, and the median of the rounds' speed-ups (each from two processes run
back to back, so a shared VM's drift over minutes cancels in it). Workloads: the default ViT at
batch 256 (``vit_throughput.py``'s), the default MAE at batch 128 (``mae_speed.py``'s) and the
``make demo`` recipe (EDM, batch 64). Fault counts depend on the kernel's transparent-huge-page
setting, which the results file records.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

from genlab.train.cpu_memory import TRIM_THRESHOLD
from machine import Machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = {  # name: (genlab train arguments, steps per process)
    "vit (192 x 6), batch 256": (["vit", "--batch-size", "256"], 12),
    "mae (192 x 6), batch 128": (["mae", "--batch-size", "128"], 20),
    "edm, make demo recipe (batch 64)": (["edm", "--recipe", str(ROOT / "recipes" / "edm-mnist.yaml")], 28),
}
MODES = ("default", "retained")
WARMUP_STEPS = 4
ROUNDS = 6


def transparent_huge_pages() -> str:
    """The kernel's THP mode (the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled)."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not path.exists():
        return "unknown"
    text = path.read_text()
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(workload: str, mode: str, out: str) -> None:
    """One ``genlab train`` run in this process; prints each step's seconds and page faults as JSON."""
    from genlab.cli import main
    from genlab.train import trainer

    args, steps = WORKLOADS[workload]
    steps_seen: list[tuple[float, int]] = []
    train_step = trainer.Trainer.train_step

    def timed(self):
        f0, t0 = minor_faults(), time.perf_counter()
        logs = train_step(self)
        steps_seen.append((time.perf_counter() - t0, minor_faults() - f0))
        return logs

    off = mock.patch.object(trainer, "retain_freed_memory", lambda: False) if mode == "default" else nullcontext()
    with off, mock.patch.object(trainer.Trainer, "train_step", timed):
        rc = main(["train", *args, "--data", "mnist5k", "--steps", str(steps), "--out", out, "--no-progress",
                   "eval_examples=16", "num_samples=16", f"ckpt_every={steps}"])
    if rc:
        raise SystemExit(rc)
    bf16 = json.loads((Path(out) / "config.json").read_text())["train"]["bf16"]
    print(json.dumps({"seconds": [s for s, _ in steps_seen], "faults": [f for _, f in steps_seen], "bf16": bf16,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_worker(workload: str, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, __file__, "--worker", workload, mode, str(Path(tmp) / "run")],
                              capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"{workload} ({mode}) failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"ms": 1e3 * statistics.median(r["seconds"][WARMUP_STEPS:]),
            "faults": statistics.median(r["faults"][WARMUP_STEPS:]), "maxrss_mb": r["maxrss_mb"], "bf16": r["bf16"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--worker", nargs=3, metavar=("WORKLOAD", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(*args.worker)
    machine = Machine()
    runs: dict[tuple[str, str], list[dict]] = {(w, m): [] for w in args.workloads for m in MODES}
    for r in range(args.rounds):
        for w in args.workloads:
            for m in MODES[::-1] if r % 2 else MODES:
                runs[w, m].append(run_worker(w, m))
                print(w, m, f"{runs[w, m][-1]['ms']:.1f} ms/step", flush=True)

    def med(w: str, m: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[w, m])

    lines = ["# CPU training with glibc's default malloc vs freed memory retained (`genlab train`)", "",
             machine.line(),
             f"- Each cell: the median over {args.rounds} fresh processes (alternating, the first flipping each round) "
             f"of one process's median training step, its first {WARMUP_STEPS} steps dropped; the speed-up is the "
             "median of the rounds' default / retained ratios; page faults are "
             "minor faults (ru_minflt) during a step, peak RSS the process's maximum resident set.",
             "- Retained: what `genlab train` does on the CPU (`genlab.train.cpu_memory.retain_freed_memory`: glibc "
             f"mallopt M_MMAP_MAX 0, M_TRIM_THRESHOLD {TRIM_THRESHOLD / 2**30:.0f} GiB); default: the same run with "
             "that call replaced by a no-op.",
             f"- Transparent huge pages: {transparent_huge_pages()}.",
             "",
             "| workload | precision | default ms/step | retained ms/step | speed-up | page faults per step: default "
             "/ retained | peak RSS MB: default / retained |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for w in args.workloads:
        base, kept = med(w, "default", "ms"), med(w, "retained", "ms")
        speedup = statistics.median(a["ms"] / b["ms"] for a, b in zip(runs[w, "default"], runs[w, "retained"]))
        precision = "bf16" if runs[w, "retained"][0]["bf16"] else "fp32"
        lines.append(f"| {w} | {precision} | {base:.1f} | {kept:.1f} | {speedup:.2f}x | "
                     f"{med(w, 'default', 'faults'):,.0f} / {med(w, 'retained', 'faults'):,.0f} | "
                     f"{med(w, 'default', 'maxrss_mb'):,.0f} / {med(w, 'retained', 'maxrss_mb'):,.0f} |")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
