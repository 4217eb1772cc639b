"""`run --resume` after kill -9 in the middle of an iteration: every finished iteration is
kept as it was, the one in flight is redone, templates are not re-added."""

import os
import signal
import subprocess
import sys
import time

from agent import runs

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]


def _wait_for(predicate, proc, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stdout.read()}")
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the run")


def test_resume_after_kill_keeps_finished_iterations_and_redoes_the_one_in_flight(tmp_path):
    args = ["run", "--preset", "smoke", "--sandbox", "process", "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)

    def third_in_flight():
        found = runs.runs(tmp_path)
        if not found or len(found[0].ledger.iterations(found[0].id)) < 2:
            return False
        return any(n == 3 for n, _, _ in found[0].repo.iterations())

    try:
        _wait_for(third_in_flight, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (r,) = runs.runs(tmp_path)
    kept = r.ledger.iterations(r.id)
    assert [row["number"] for row in kept] == [1, 2]
    # the driver's lock goes when the last of its processes does (a child forked a moment
    # before the kill can outlive the driver by a little)
    end = time.monotonic() + 30.0
    while r.state() != "crashed" and time.monotonic() < end:
        time.sleep(0.2)
    assert r.state() == "crashed"

    done = subprocess.run([*CLI, "run", "--resume", r.id, "--run-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming run" in done.stdout and "search finished" in done.stdout
    r = runs.open_run(tmp_path, r.id)
    rows = r.ledger.iterations(r.id)
    assert [row["number"] for row in rows] == [1, 2, 3, 4, 5]
    for before, after in zip(kept, rows, strict=False):
        assert (before["commit_sha"], before["created"]) == (after["commit_sha"],
                                                             after["created"])
    assert [row["architect"] for row in rows].count("template") == 2
    for row, (_, _, head) in zip(rows, r.repo.iterations(), strict=True):
        c = r.repo.repo.commit(head)  # a finalist's branch holds one more commit: final.json
        assert row["commit_sha"] in (head, c.parents[0].hexsha if c.parents else None)
    # the redone iteration's branch holds one check commit and one results commit (and a
    # final one if it is the finalist)
    commits = [c.message for c in r.repo.repo.iter_commits(rows[2]["branch"])]
    assert len([m for m in commits if "final, held out" not in m]) == 3
    assert r.state() == "finished"


def _sandbox_workers() -> list[str]:
    """One line per sandbox: its outermost process (bubblewrap runs three per candidate)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True,
                         text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if "sandbox.worker" in line]
    pids = {pid for pid, _, _ in rows}
    return [args for _, ppid, args in rows if ppid not in pids]


def test_kill_9_with_two_in_flight_then_resume_loses_nothing_and_leaves_no_orphan(tmp_path):
    args = ["run", "--preset", "smoke", "--sandbox", "process", "--parallel", "2",
            "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)

    def two_in_flight_after_one_recorded():
        found = runs.runs(tmp_path)
        if not found or not found[0].ledger.iterations(found[0].id):
            return False
        return len(found[0].in_flight()) == 2 and len(_sandbox_workers()) == 2

    try:
        _wait_for(two_in_flight_after_one_recorded, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone: what it started must follow
        proc.wait()
    (r,) = runs.runs(tmp_path)
    kept = r.ledger.iterations(r.id)
    in_flight = {c["number"] for c in r.in_flight()}
    assert len(in_flight) == 2 and not in_flight & {row["number"] for row in kept}
    end = time.monotonic() + 30.0
    while (r.state() != "crashed" or _sandbox_workers()) and time.monotonic() < end:
        time.sleep(0.2)
    assert r.state() == "crashed" and _sandbox_workers() == []  # sandboxes die with it

    done = subprocess.run([*CLI, "run", "--resume", r.id, "--run-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    r = runs.open_run(tmp_path, r.id)
    rows = r.ledger.iterations(r.id)
    assert [row["number"] for row in rows] == [1, 2, 3, 4, 5]  # the two redone, none twice
    by_number = {row["number"]: row for row in rows}
    for before in kept:
        after = by_number[before["number"]]
        assert (before["commit_sha"], before["created"]) == (after["commit_sha"],
                                                             after["created"])
    assert sorted(row["name"] for row in rows if row["architect"] == "template") == ["T1", "T5"]
    assert [n for n, _, _ in r.repo.iterations()] == [1, 2, 3, 4, 5]
    assert r.state() == "finished" and _sandbox_workers() == []
    assert not (r.dir / "flight.json").exists()
