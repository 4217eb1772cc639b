"""Does a loss that sees spikes make models commit to events, and does that reach the
frontier variables (nRt V, nRt m_T, GABA_A: 60 that nothing recovered)?

T5, T6 and T9, each trained with every loss of the ``loss`` axis under the same budget,
through the project's own sandbox and evaluator, on a subset of the default dataset
(first N trials, split anew by regime). Printed per model and loss, on the selection
trials: spike r, the event scores (spread ratio, bursts per trial against the truth,
timing error, hits within ±10 ms, distance at 10 ms, r per regime), variables recovered
by kind, frontier variables recovered and beyond controls, with the wall time. The peer
is the same template trained with ``mse_rate``, in the same run.

    .venv/bin/python benchmarks/bench_frontier.py [--trials 64] [--minutes 3]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.evaluator import Evaluator
from descartes_core import contract, dataset
from descartes_core.contract import LossChoice

FRONTIER = {("nrt_state", "V"), ("nrt_state", "m_T"), ("synaptic", "g_GABAA")}
KINDS = ("tc m_T", "tc h_T", "tc m_H", "nrt V", "nrt m_T", "nrt h_T", "GABA_A", "GABA_B")


def subset(ds: dataset.Dataset, n: int) -> dataset.Dataset:
    """The first `n` trials, with a fresh four-way split by regime (seed 0)."""
    meta = json.loads(json.dumps(ds.meta))
    meta["trials"] = meta["trials"][:n]
    meta["n_trials"] = n
    meta["split"] = dataset.split_trials([r["regime"] for r in meta["trials"]], 0)
    sub = dataset.Dataset(ds.inputs[:n], ds.outputs[:n], ds.biovars[:n], meta,
                          ds.spikes[:n], None)
    meta["fingerprint"] = dataset.fingerprint(sub.inputs, sub.outputs, sub.biovars, meta)
    return sub


def with_loss(source: str, loss: str) -> str:
    """The source with its PROPERTIES declaring `loss`."""
    if re.search(r'"loss":\s*"[a-z_]+"', source):
        return re.sub(r'"loss":\s*"[a-z_]+"', f'"loss": "{loss}"', source, count=1)
    return re.sub(r'("solver":\s*"[a-z0-9_]+",?)', rf'\1\n    "loss": "{loss}",', source,
                  count=1)


def kind(v: dict) -> str:
    cell = "nrt" if v["category"] == "nrt_state" else "tc"
    if v["category"] == "synaptic":
        return v["symbol"].replace("g_GABAA", "GABA_A").replace("g_GABAB", "GABA_B")
    return f"{cell} {v['symbol']}"


def row(name: str, loss: str, s: dict, variables: list[dict], wall: float) -> dict:
    rec = s["recovered_vector"]
    by_kind = {k: 0 for k in KINDS}
    frontier = 0
    for v, ok in zip(variables, rec, strict=True):
        by_kind[kind(v)] = by_kind.get(kind(v), 0) + int(ok)
        frontier += int(ok and (v["category"], v["symbol"]) in FRONTIER)
    return {"model": name, "loss": loss, "spike_r": s["spike_corr"], "events": s["events"],
            "recovered": s["recovered"], "by_kind": by_kind, "frontier": frontier,
            "beyond_controls": s["beyond_controls"], "wall_s": round(wall)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    ap.add_argument("--templates", default="T5,T6,T9")
    ap.add_argument("--sandbox", default="process")
    ap.add_argument("--out", default="benchmarks/results/frontier.json")
    args = ap.parse_args()
    start = time.monotonic()
    path, _ = dataset.cached_or_simulated(dataset.SimulationSpec())
    ds = subset(dataset.load(path), args.trials)
    train = {"time_budget_h": args.minutes / 60.0, "max_epochs": 500, "batch_size": 8,
             "lr": 3e-3, "state_grad_bound": 1.0, "guard_every": 10}
    ev = Evaluator(ds, backend=args.sandbox, train=train)
    n = {k: len(v) for k, v in ds.meta["split"].items()}
    print(f"default dataset, first {args.trials} trials (split {n}), {args.minutes:g} min "
          f"per model, sandbox {args.sandbox}", flush=True)
    sources = contract.template_sources()
    rows = []
    for name in args.templates.split(","):
        for loss in (c.value for c in LossChoice):
            t0 = time.monotonic()
            result = ev.measure(ev.train(with_loss(sources[name], loss)))
            wall = time.monotonic() - t0
            if result.status != "scored":
                rows.append({"model": name, "loss": loss, "failed": result.failure_kind,
                             "message": result.failure_message, "wall_s": round(wall)})
                print(f"{name} {loss}: failed {result.failure_kind}: "
                      f"{(result.failure_message or '')[:200]}", flush=True)
                continue
            rows.append(row(name, loss, result.scores, ds.meta["variables"], wall))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "trials": args.trials,
                                          "minutes": args.minutes}, indent=1))
    print(f"\nwall time {time.monotonic() - start:.0f} s; rows in {args.out}")
    return 0


def print_table(rows: list[dict]) -> None:
    truth = next((r["events"]["bursts_true"] for r in rows if "events" in r), float("nan"))
    print(f"\n| model | loss | spike r | spread | bursts (true {truth:g}) | timing ms | hits "
          f"| d10 | r relay / osc | recovered | {' / '.join(KINDS)} | frontier | beyond "
          "controls | wall s |")
    print("|" + " --- |" * 14)
    for r in rows:
        if "failed" in r:
            print(f"| {r['model']} | {r['loss']} | failed: {r['failed']} |" + " |" * 11
                  + f" {r['wall_s']} |")
            continue
        e = r["events"]
        reg = e["r_by_regime"]
        print(f"| {r['model']} | {r['loss']} | {r['spike_r']:.3f} | {e['spread_ratio']:.2f} | "
              f"{e['bursts_pred']:g} | {e['burst_timing_ms']} | {e['burst_hits']} | "
              f"{e['distance_10ms']:.3f} | {reg.get('relay', np.nan):.2f} / "
              f"{reg.get('oscillatory', np.nan):.2f} | {r['recovered']} | "
              f"{' / '.join(str(r['by_kind'][k]) for k in KINDS)} | {r['frontier']} | "
              f"{r['beyond_controls']} | {r['wall_s']} |")


if __name__ == "__main__":
    sys.exit(main())
