"""Candidates per hour at --parallel 1 and 2 (local slots, and Ray tasks on a local
instance) on this machine, measured in one run, and the driver's own time per iteration.

Each configuration runs the smoke preset (2 templates, 3 offline expansions, no finalists)
in the process sandbox, through the CLI, from a fresh run folder. The peer every ratio is
measured against is the serial loop (--parallel 1, local) of the same run. The driver's
time per iteration is the run's wall clock less the training jobs' wall clock (the
ledger's train_hours), over the iterations, at --parallel 1: it holds the proposal, the
static policy, the sandboxed shape check, git, scoring and the ledger.

    .venv/bin/python benchmarks/bench_parallel.py [--expansions 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import runs

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]
CONFIGS = (("serial (peer)", ["--parallel", "1"]),
           ("local, 2 in flight", ["--parallel", "2"]),
           ("ray, 2 in flight", ["--parallel", "2", "--executor", "ray"]))


def measure(extra: list[str], expansions: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        start = time.monotonic()
        subprocess.run([*CLI, "run", "--preset", "smoke", "--sandbox", "process",
                        "--finalists", "0", "--max-llm-expansions", str(expansions),
                        "--run-dir", d, *extra], check=True, capture_output=True, text=True)
        wall = time.monotonic() - start
        (r,) = runs.runs(Path(d))
        rows = r.ledger.iterations(r.id)
    train_s = sum(row["train_hours"] for row in rows) * 3600
    return {"wall_s": wall, "n": len(rows), "per_hour": len(rows) / wall * 3600,
            "driver_s": (wall - train_s) / len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expansions", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for name, extra in CONFIGS:
        results[name] = m = measure(extra, args.expansions)
        print(f"{name:22s} {m['n']} candidates in {m['wall_s']:6.1f} s: "
              f"{m['per_hour']:6.0f} per hour", flush=True)
    peer = results["serial (peer)"]
    for name, m in results.items():
        print(f"{name:22s} {m['per_hour'] / peer['per_hour']:.2f}× the serial loop")
    print(f"driver time per iteration outside training, serial: {peer['driver_s']:.2f} s "
          "(whole run wall clock less the training jobs', per iteration: proposal, policy, "
          "sandboxed shape check, git, scoring, ledger, and the run's start-up)")


if __name__ == "__main__":
    main()
