"""Peer parity and speed: genlab's ``nsf`` vs ``zuko.flows.NSF`` on the same 2-D data, budget and loop.

Run with ``python benchmarks/flow_zuko.py`` (needs ``pip install --no-deps zuko``; zuko needs only
torch); writes ``benchmarks/results/flow_zuko.md``.

Both are NSF-AR with zuko's defaults: 3 autoregressive rational-quadratic spline transforms in
alternating orders, MADE hyper-networks of 2 x 64 ReLU units, K = 8 bins on [-5, 5], identity
tails, minimum slope 1e-3. They train in one plain loop (Adam 1e-3, batch 256, the same batches),
alternating step by step so that both see the same machine state; the step time is the median of
the timed steps. Test log-likelihood (nats per point, mean +- standard error) on the whole test
split; sampling time for 10,000 points (D sequential passes per transform for both).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

import genlab
from genlab.data import load_dataset

from machine import Machine

RESULTS = Path(__file__).resolve().parent / "results"
TOYS = ("moons", "ring8", "checkerboard", "swissroll")
STEPS, BATCH, LR = 3000, 256, 1e-3


def peers(dim: int):
    import zuko

    torch.manual_seed(0)
    ours = genlab.create("nsf", data_shape=(dim,), transforms=3, hidden=64, depth=2, spline_bins=8, tail_bound=5.0).flow
    torch.manual_seed(0)
    theirs = zuko.flows.NSF(dim, transforms=3, hidden_features=(64, 64), bins=8)
    return {"genlab nsf": (ours, ours.log_prob, lambda n: ours.sample(n, torch.Generator().manual_seed(1))),
            "zuko NSF": (theirs, lambda x: theirs().log_prob(x), lambda n: theirs().sample((n,)))}


def compare(toy: str, steps: int) -> dict:
    data = load_dataset(toy)
    x, test = data.train.x, data.test.x
    models = peers(x.shape[1])
    opts = {k: torch.optim.Adam(m.parameters(), lr=LR) for k, (m, _, _) in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = x[torch.randint(0, len(x), (BATCH,), generator=g)]
        for k, (_, log_prob, _) in models.items():
            t0 = time.perf_counter()
            loss = -log_prob(batch).mean()
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            if step >= 20:  # warm-up steps untimed
                times[k].append(time.perf_counter() - t0)
    out = {}
    for k, (m, log_prob, sample) in models.items():
        with torch.no_grad():
            lp = log_prob(test)
            t0 = time.perf_counter()
            s = sample(10000)
            sample_s = time.perf_counter() - t0
        out[k] = dict(ll=lp.mean().item(), se=lp.std().item() / math.sqrt(len(lp)),
                      step_ms=1000 * statistics.median(times[k]), sample_s=sample_s,
                      params=sum(p.numel() for p in m.parameters()), finite=bool(torch.isfinite(s).all()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    try:
        import zuko
    except ImportError:
        raise SystemExit("flow_zuko.py needs zuko: pip install --no-deps zuko")
    machine, started = Machine(), time.perf_counter()
    table = ["| data | flow | params | test log-likelihood | train ms/step (median) | sampling 10k (s) |",
             "|---|---|---:|---:|---:|---:|"]
    ratios, gaps = [], []
    for toy in args.toys:
        r = compare(toy, args.steps)
        for k, v in r.items():
            table.append(f"| {toy} | {k} | {v['params']:,} | {v['ll']:.3f} +- {v['se']:.3f} | {v['step_ms']:.2f} | "
                         f"{v['sample_s']:.3f} |")
        ours, theirs = r["genlab nsf"], r["zuko NSF"]
        ratios.append(theirs["step_ms"] / ours["step_ms"])
        gaps.append(ours["ll"] - theirs["ll"])
        print(table[-2], table[-1], sep="\n", flush=True)
    lines = ["# Neural spline flows: genlab nsf vs zuko.flows.NSF, side by side", "", machine.line(),
             f"- zuko {zuko.__version__}; both NSF-AR, 3 transforms, MADE 2 x 64 ReLU, K = 8 bins on [-5, 5], "
             f"min slope 1e-3; {args.steps} Adam steps (lr {LR:g}, batch {BATCH}, the same batches), alternating "
             "step by step; test log-likelihood on the whole test split (nats per point, mean +- standard error).",
             f"- Whole run {time.perf_counter() - started:.0f} s.", "", *table, "",
             "Training speed, zuko ms/step over genlab ms/step (> 1: genlab faster), per toy: "
             + ", ".join(f"{t} {q:.2f}x" for t, q in zip(args.toys, ratios))
             + f"; median {statistics.median(ratios):.2f}x.",
             "Test log-likelihood, genlab minus zuko (nats per point): "
             + ", ".join(f"{t} {d:+.3f}" for t, d in zip(args.toys, gaps)) + "."]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flow_zuko.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
