"""Benchmark the sliding window maximum: brute force, deque, vectorised numpy, scipy.

Run with ``python benchmarks/sliding_window.py``; it prints two tables and writes
``benchmarks/results/sliding_window.md`` and ``benchmarks/results/sliding_window.png``.

- brute force: honest O(nk) work, ``k - 1`` in-place ``np.maximum`` passes over shifted views;
- deque: :func:`genlab.algorithms.sliding_window.sliding_window_max` on a Python list;
- vectorised: :func:`genlab.algorithms.sliding_window.sliding_window_max_np`;
- scipy: ``scipy.ndimage.maximum_filter1d`` (C), its origin set so that output ``i`` is the
  window ``[i, i + k)``, sliced to the ``n - k + 1`` full windows.

Every output is checked equal to the vectorised one. Each method is repeated back to back and
the median is reported, of the wall clock (``time.perf_counter``) and of the CPU time of the
thread (``time.thread_time``, which other processes on a shared machine disturb less). A brute
force cell estimated to take over ``BRUTE_BUDGET_S`` is timed on a prefix of ``PREFIX`` values,
scaled linearly in n and marked as extrapolated.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
import scipy
from scipy.ndimage import maximum_filter1d

from genlab.algorithms import sliding_window as sw

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

NS = (10**6, 10**7)
KS = (3, 100, 1000)
BRUTE_BUDGET_S = 15.0
PREFIX = 10**6
BIG = 10**6  # n above this is "big": fewer repetitions
VEC_REPS, DEQUE_REPS = (9, 5), (3, 1)  # repetitions (n <= BIG, n > BIG) of vectorised and scipy, of the deque
BRUTE_FAST_S, BRUTE_REPS = 2.0, (3, 1)  # brute force: repetitions when estimated under BRUTE_FAST_S s, else
SCIPY_FACTOR, BRUTE_FACTOR, TARGET_K = 2, 100, 1000  # targets: vec within 2x of scipy; >= 100x brute at k = 1000
SPREAD_N, SPREAD_TRIALS, SPREAD_VEC_REPS = 10**6, 5, 9  # paired re-runs of brute / vectorised at k = TARGET_K
OTHER_JOBS = 0.5  # load average above this (before), or above it plus the 1 busy thread (after): other jobs
RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {  # key: (label, plot style)
    "brute": ("brute force O(nk)", "o-"),
    "deque": ("deque, pure Python", "s-"),
    "vec": ("vectorised numpy", "^-"),
    "scipy": ("scipy maximum_filter1d", "d-"),
}


def sliding_window_max_brute(a: np.ndarray, k: int) -> np.ndarray:
    """O(nk) reference: the maximum of k shifted views, one in-place pass per offset."""
    m = a.shape[-1] - k + 1
    out = a[:m].copy()
    for j in range(1, k):
        np.maximum(out, a[j : j + m], out=out)
    return out


def scipy_max(a: np.ndarray, k: int) -> np.ndarray:
    return maximum_filter1d(a, size=k, origin=-(k // 2))[: a.shape[-1] - k + 1]


def timed(fn: Callable[[], object], reps: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU milliseconds over ``reps`` calls, and the last result."""
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu), out


def bench_cell(a: np.ndarray, nums: list[float], k: int) -> dict:
    n = a.size
    big = n > BIG
    row: dict = {"n": n, "k": k, "extrapolated": False}
    row["vec"], row["vec_cpu"], vec = timed(lambda: sw.sliding_window_max_np(a, k), VEC_REPS[big])
    row["scipy"], row["scipy_cpu"], sp = timed(lambda: scipy_max(a, k), VEC_REPS[big])
    assert np.array_equal(sp, vec), "scipy disagrees"
    row["deque"], row["deque_cpu"], dq = timed(
        lambda: sw.sliding_window_max(nums, k), DEQUE_REPS[big]
    )
    assert np.array_equal(np.asarray(dq), vec), "deque disagrees"

    small = min(n, 10**5)
    estimate_s = timed(lambda: sliding_window_max_brute(a[:small], k), 1)[0] * n / small / 1e3
    if estimate_s <= BRUTE_BUDGET_S:
        reps = BRUTE_REPS[estimate_s >= BRUTE_FAST_S]
        row["brute"], row["brute_cpu"], br = timed(lambda: sliding_window_max_brute(a, k), reps)
        assert np.array_equal(br, vec), "brute force disagrees"
    else:
        wall, cpu, br = timed(lambda: sliding_window_max_brute(a[:PREFIX], k), 1)
        assert np.array_equal(br, vec[: PREFIX - k + 1]), "brute force disagrees"
        row["brute"], row["brute_cpu"] = wall * n / PREFIX, cpu * n / PREFIX
        row["extrapolated"] = True
    return row


def numpy_algorithm(k: int) -> str:
    if k <= sw._DOUBLING_MAX_K:
        return "doubling"
    return f"two-level (blocks of {sw._BLOCK})"


def pow10(n: int) -> str:
    """10^e for a power of ten, else n with thousands separators."""
    e = round(np.log10(n))
    return f"10^{e}" if 10**e == n else f"{n:,}"


def fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def table(rows: list[dict], clock: str) -> list[str]:
    lines = [
        "| n | k | " + " | ".join(label for label, _ in METHODS.values())
        + " | vectorised / scipy | brute / vectorised | deque / vectorised | numpy algorithm |",
        "|---:|---:|" + "---:|" * (len(METHODS) + 3) + "---|",
    ]
    for r in rows:
        t = {key: r[key + clock] for key in METHODS}
        brute = fmt(t["brute"]) + (" (extrapolated)" if r["extrapolated"] else "")
        lines.append(
            f"| 10^{round(np.log10(r['n']))} | {r['k']} | {brute} | {fmt(t['deque'])} "
            f"| {fmt(t['vec'])} | {fmt(t['scipy'])} | {t['vec'] / t['scipy']:.2f} "
            f"| {fmt(t['brute'] / t['vec'])} | {fmt(t['deque'] / t['vec'])} "
            f"| {numpy_algorithm(r['k'])} |"
        )
    return lines


def verdict(rows: list[dict], spread: list[float]) -> list[str]:
    """Target 1 over every cell and both clocks; target 2 per n over every k = 1000 ratio."""
    scipy_wall = max(r["vec"] / r["scipy"] for r in rows)
    scipy_cpu = max(r["vec_cpu"] / r["scipy_cpu"] for r in rows)
    met_scipy = "MET" if max(scipy_wall, scipy_cpu) <= SCIPY_FACTOR else "NOT MET"
    per_n = []
    for r in (r for r in rows if r["k"] == TARGET_K):
        wall, cpu = r["brute"] / r["vec"], r["brute_cpu"] / r["vec_cpu"]
        extra = spread if r["n"] == SPREAD_N else []
        ratios = [wall, cpu, *extra]
        median = statistics.median(ratios)
        status = ("MET" if min(ratios) >= BRUTE_FACTOR else "NOT MET" if median < BRUTE_FACTOR
                  else "BORDERLINE")
        rerun = f"; paired re-runs, CPU: {', '.join(f'{x:.0f}x' for x in extra)}" if extra else ""
        per_n.append(
            f"n = 10^{round(np.log10(r['n']))} **{status}** ({wall:.0f}x wall-clock, {cpu:.0f}x CPU"
            f"{rerun}; median {median:.0f}x)"
        )
    return [
        f"- vectorised within {SCIPY_FACTOR}x of scipy's C implementation: **{met_scipy}** (worst vectorised / "
        f"scipy over all cells: {scipy_wall:.2f} wall-clock, {scipy_cpu:.2f} CPU time)",
        f"- >= {BRUTE_FACTOR}x faster than brute force at k = {TARGET_K}: {'; '.join(per_n)}. MET: every ratio is "
        f">= {BRUTE_FACTOR}x; BORDERLINE: the median is, not every ratio; NOT MET: the median is below.",
    ]


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(NS), figsize=(11, 4.2), sharey=True)
    for ax, n in zip(axes, NS):
        cells = [r for r in rows if r["n"] == n]
        ks = [r["k"] for r in cells]
        for key, (label, style) in METHODS.items():
            ax.plot(ks, [r[key] for r in cells], style, label=label)
        for r in cells:
            if r["extrapolated"]:
                ax.annotate("extrapolated", (r["k"], r["brute"]), textcoords="offset points",
                            xytext=(-30, 8), fontsize=8)
        ax.set(xscale="log", yscale="log", xlabel="window k", title=f"n = 10^{round(np.log10(n))}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall-clock time, ms (median)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Sliding window maximum, float64")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def paired_ratios(a: np.ndarray, k: int, trials: int = SPREAD_TRIALS) -> list[float]:
    """brute / vectorised CPU time, each trial timing both back to back: the run-to-run spread."""
    ratios = []
    for _ in range(trials):
        vec = timed(lambda: sw.sliding_window_max_np(a, k), SPREAD_VEC_REPS)[1]
        ratios.append(timed(lambda: sliding_window_max_brute(a, k), 1)[1] / vec)
    return ratios


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    started, load_before = time.perf_counter(), os.getloadavg()
    arrays = {n: rng.standard_normal(n) for n in NS}
    for n, a in arrays.items():
        nums = a.tolist()
        for k in KS:
            rows.append(bench_cell(a, nums, k))
            print(table(rows, "")[-1], flush=True)
    spread = paired_ratios(arrays[SPREAD_N], TARGET_K)
    elapsed = time.perf_counter() - started

    load_after = os.getloadavg()
    shared = load_before[0] > OTHER_JOBS or load_after[0] > 1 + OTHER_JOBS
    extrapolated = any(r["extrapolated"] for r in rows)
    lines = [
        "# Sliding window maximum benchmark",
        "",
        "`python benchmarks/sliding_window.py`: float64 standard normal input, times in ms, the "
        f"median of back-to-back repetitions (vectorised and scipy {VEC_REPS[0]} at n <= {pow10(BIG)} and "
        f"{VEC_REPS[1]} above; the deque {DEQUE_REPS[0]} and {DEQUE_REPS[1]}; brute force {BRUTE_REPS[0]} when "
        f"estimated under {BRUTE_FAST_S:g} s, else {BRUTE_REPS[1]}).",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
        f"- whole run {elapsed:.0f} s; load average (1/5/15 min) before "
        f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)} "
        f"({'other jobs shared' if shared else 'no sign of other jobs on'} the CPUs: the rule is 1-min load before > "
        f"{OTHER_JOBS} or after > 1 busy thread + {OTHER_JOBS}). Other jobs make wall-clock times noisy; the CPU "
        "time of the timed thread (`time.thread_time`) is disturbed less.",
        "",
        "## Wall-clock time (`time.perf_counter`), ms",
        "",
        *table(rows, ""),
        "",
        "## CPU time of the thread (`time.thread_time`), ms",
        "",
        *table(rows, "_cpu"),
        "",
        "Brute force is honest O(nk) work: `k - 1` in-place `np.maximum` passes over shifted views "
        "(vectorised per offset, not per window). "
        + (f"Cells marked extrapolated were timed on a {pow10(PREFIX)} prefix and scaled linearly in n."
           if extrapolated else "Every cell was measured in full, none extrapolated."),
        f"scipy is `maximum_filter1d(a, k, origin=-(k // 2))[: n - k + 1]`. All {len(METHODS)} outputs are "
        "checked equal. The last column is the path `sliding_window_max_np` took (see its module "
        f"docstring): doubling for k <= {sw._DOUBLING_MAX_K}, the O(n) two-level algorithm above.",
        "",
        "## Verdict",
        "",
        *verdict(rows, spread),
        "",
        f"The paired re-runs measure how stable the thinnest margin is: {len(spread)} more trials of "
        f"n = {pow10(SPREAD_N)}, k = {TARGET_K}, each the median of {SPREAD_VEC_REPS} vectorised calls (CPU time), "
        "then one brute-force call.",
        "",
        "![time vs k](sliding_window.png)",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sliding_window.md").write_text("\n".join(lines))
    plot(rows, RESULTS / "sliding_window.png")
    print("\n".join(["", "CPU time:", *table(rows, "_cpu"), "", *verdict(rows, spread)]))
    print(f"wrote {RESULTS / 'sliding_window.md'} and sliding_window.png ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
