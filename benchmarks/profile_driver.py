"""Where the driver's time goes, per iteration: a serial smoke run (process sandbox, no
finalists) under cProfile, its cumulative time split by stage.

The stages are the driver's own work (proposal, static policy, git, scoring, ledger,
gap and patterns, the library's mining) and the sandboxed jobs it waits for outside
training (the shape check, a block's verification), which a run with --parallel 2 or
more prepares while other candidates train. Start-up (data, the baseline's probes, the
controls) and the end (summary, report) are shown apart, once per run.

    .venv/bin/python benchmarks/profile_driver.py [--expansions 3]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = {  # (file suffix, function): stage
    ("agent/orchestrator.py", "_loop"): "the search loop (start-up and end apart)",
    ("agent/executor.py", "wait"): "waiting on training",
    ("sandbox/runner.py", "check"): "sandboxed shape check (policy included)",
    ("sandbox/runner.py", "verify_blocks"): "sandboxed block verification",
    ("sandbox/policy.py", "check"): "static policy",
    ("agent/offline.py", "propose"): "proposal",
    ("agent/repository.py", "commit"): "git commits",
    ("agent/evaluator.py", "measure"): "scoring (trusted side)",
    ("agent/orchestrator.py", "_record"): "recording: ledger, standing, library",
    ("agent/orchestrator.py", "_brief"): "brief: gap, patterns, archive, sources",
    ("agent/orchestrator.py", "_open"): "start-up: ledger, evaluator, library, executor",
    ("agent/report.py", "write"): "end: the HTML report",
}
WAITS = ("waiting on training", "sandboxed shape check (policy included)",
         "sandboxed block verification")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expansions", type=int, default=3)
    args = ap.parse_args()
    from agent import runs
    from agent.cli import main as cli

    with tempfile.TemporaryDirectory() as d:
        argv = ["descartes-agent", "run", "--preset", "smoke", "--sandbox", "process",
                "--finalists", "0", "--max-llm-expansions", str(args.expansions),
                "--run-dir", d]
        prof = cProfile.Profile()
        sys.argv = argv
        start = time.perf_counter()
        prof.enable()
        try:
            cli()
        except SystemExit:
            pass
        prof.disable()
        wall = time.perf_counter() - start
        (r,) = runs.runs(Path(d))
        n = len(r.ledger.iterations(r.id))
    stats = pstats.Stats(prof)
    totals: dict[str, float] = {}
    for (file, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for (suffix, name), stage in STAGES.items():
            if func == name and file.endswith(suffix):
                totals[stage] = totals.get(stage, 0.0) + cum
    print(f"{n} iterations in {wall:.1f} s (driver wall clock, training included)",
          file=sys.stderr)
    for stage, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        once = stage.startswith(("start-up", "end"))
        print(f"  {stage:52s} {t:7.2f} s" + ("" if once else f"  {t / n:6.2f} s/iteration"),
              file=sys.stderr)
    loop = totals.get("the search loop (start-up and end apart)", 0.0)
    own = loop - sum(totals.get(w, 0.0) for w in WAITS)
    print(f"the driver's own work in the loop, per iteration (all but waiting on training "
          f"and on sandboxed checks): {own / n:.2f} s; with the sandboxed checks: "
          f"{(loop - totals.get('waiting on training', 0.0)) / n:.2f} s", file=sys.stderr)

if __name__ == "__main__":
    main()
