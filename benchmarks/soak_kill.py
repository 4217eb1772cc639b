"""Soak: kill the driver with -9 at seeded random moments across runs, resume each time,
and check what a resume promises (not in CI: minutes).

Each kill lands while candidates are in flight or being recorded; after it the script
checks that no sandbox outlives the driver, that the run reads as crashed, and resumes
it. When a run finishes, its ledger and branches are checked (iterations 1…N each once,
one branch per row, commits matching) and a new run starts, until `--kills` kills.

    .venv/bin/python benchmarks/soak_kill.py [--kills 20] [--seed 0] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import runs

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]


def workers() -> int:
    out = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    return sum("sandbox.worker" in line for line in out.splitlines())


def check_finished(r: runs.Run) -> list[str]:
    rows = r.ledger.iterations(r.id)
    numbers = [row["number"] for row in rows]
    faults = []
    if numbers != list(range(1, len(rows) + 1)):
        faults.append(f"{r.id}: iterations {numbers}")
    branches = r.repo.iterations()
    if [n for n, _, _ in branches] != numbers:
        faults.append(f"{r.id}: branches {[n for n, _, _ in branches]} against rows {numbers}")
    for row, (_, _, head) in zip(rows, branches, strict=False):
        c = r.repo.repo.commit(head)
        if row["commit_sha"] not in (head, c.parents[0].hexsha if c.parents else None):
            faults.append(f"{r.id}: iteration {row['number']}'s commit is not its branch's")
    if sorted(row["name"] for row in rows if row["architect"] == "template") != ["T1", "T5"]:
        faults.append(f"{r.id}: templates recorded other than once each")
    return faults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    run_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    start_args = ["run", "--preset", "smoke", "--sandbox", "process", "--parallel",
                  str(args.parallel), "--run-dir", str(run_dir)]
    kills, finished, faults, run_id = 0, 0, [], None
    while kills < args.kills:
        cmd = start_args if run_id is None else ["run", "--resume", run_id, "--run-dir",
                                                 str(run_dir)]
        before = {r.id for r in runs.runs(run_dir)}
        proc = subprocess.Popen(CLI + cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(3.0, 25.0))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            new = [r for r in runs.runs(run_dir) if r.id == run_id or r.id not in before]
            if not new:  # killed before its folder existed: nothing to resume
                print(f"kill {kills:2d}: before the run began", flush=True)
                continue
            (r,) = new
            run_id = r.id
            end = time.monotonic() + 30
            while (r.state() != "crashed" or workers()) and time.monotonic() < end:
                time.sleep(0.2)
            if r.state() != "crashed" or workers():
                faults.append(f"kill {kills}: state {r.state()}, {workers()} sandboxes left")
            print(f"kill {kills:2d}: {len(r.ledger.iterations(r.id))} iterations kept, "
                  f"{len(r.in_flight())} were in flight", flush=True)
            continue
        r = runs.open_run(run_dir, run_id)
        if proc.returncode != 0:
            faults.append(f"{r.id}: exited {proc.returncode}")
        faults += check_finished(r)
        finished += 1
        print(f"run {r.id} finished ({len(r.ledger.iterations(r.id))} iterations)", flush=True)
        run_id = None
    if run_id is not None:  # the last killed run, resumed to its end
        done = subprocess.run([*CLI, "run", "--resume", run_id, "--run-dir", str(run_dir)],
                              capture_output=True, text=True)
        r = runs.open_run(run_dir, run_id)
        faults += ([f"{r.id}: exited {done.returncode}"] if done.returncode else [])
        faults += check_finished(r)
        finished += 1
    print(f"{kills} kills, {finished} runs finished and checked, {len(faults)} faults")
    for f in faults:
        print("  FAULT", f)


if __name__ == "__main__":
    main()
