"""The SQLite ledger: iterations whole or not at all, across crashes and reopenings."""

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from agent.ledger import Ledger


def _iteration(n, **extra):
    return {"number": n, "name": f"m{n}", "architect": "offline", "properties": {"family": "x"},
            "reasoning": "because", "status": "scored", "recovered": 80 + n,
            "scores": {"recovered": 80 + n}, **extra}


def test_iterations_and_calls_round_trip(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    led.start_run("r1", {"seed": 0}, "abc")
    led.record_iteration("r1", _iteration(1), [{"architect": "offline", "prompt_hash": "h1"}])
    led.record_iteration("r1", _iteration(2, status="failed", failure_kind="policy"))
    its = led.iterations("r1")
    assert [i["number"] for i in its] == [1, 2]
    assert its[0]["properties"] == {"family": "x"} and its[0]["scores"]["recovered"] == 81
    assert its[1]["failure_kind"] == "policy"
    assert [c["prompt_hash"] for c in led.calls("r1")] == ["h1"]
    led.close()
    again = Ledger(tmp_path / "ledger.sqlite")
    assert len(again.iterations("r1")) == 2 and again.runs()[0]["status"] == "running"


def test_a_failed_write_leaves_no_part_of_the_iteration(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    led.start_run("r1", {}, "abc")
    bad_call = {"architect": "offline", "prompt_hash": None}  # NOT NULL violated mid-write
    with pytest.raises(sqlite3.IntegrityError):
        led.record_iteration("r1", _iteration(1), [bad_call])
    assert led.iterations("r1") == [] and led.calls("r1") == []
    led.record_iteration("r1", _iteration(1))  # the redo succeeds
    assert len(led.iterations("r1")) == 1


def test_kill_9_in_the_middle_of_writing_loses_no_finished_iteration(tmp_path):
    path = tmp_path / "ledger.sqlite"
    writer = textwrap.dedent(f"""
        from agent.ledger import Ledger
        led = Ledger({str(path)!r})
        led.start_run("r1", {{}}, "abc")
        n = 0
        while True:
            n += 1
            calls = [{{"architect": "offline", "prompt_hash": str(k)}} for k in range(20)]
            led.record_iteration("r1", {{"number": n, "name": "m", "architect": "offline",
                "properties": {{}}, "reasoning": "", "status": "scored"}}, calls)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it only once it is busy writing
        time.sleep(0.2)
        if path.exists():
            try:
                done = sqlite3.connect(path).execute("SELECT COUNT(*) FROM iterations").fetchone()
            except sqlite3.OperationalError:
                continue
            if done[0] >= 5:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    led = Ledger(path)
    assert led.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    its = led.iterations("r1")
    assert len(its) >= 5
    assert [i["number"] for i in its] == list(range(1, len(its) + 1))
    per_iteration = {}
    for c in led.calls("r1"):
        per_iteration[c["iteration"]] = per_iteration.get(c["iteration"], 0) + 1
    assert set(per_iteration.values()) == {20}  # every recorded iteration is whole


def test_an_implausible_score_is_flagged_in_its_row_and_in_an_older_ledger(tmp_path):
    """r ≥ 0.99 on most variables: the row says so whoever recorded it; a ledger written
    before the column existed is flagged when it is opened."""
    leaked = {"recovered": 160, "correlations": [0.999] * 100 + [0.4] * 60}
    led = Ledger(tmp_path / "ledger.sqlite")
    led.start_run("r1", {"seed": 0}, "abc")
    led.record_iteration("r1", _iteration(1, scores=leaked, implausible=None))
    led.record_iteration("r1", _iteration(2, implausible="forged: no"))
    flags = [i["implausible"] for i in led.iterations("r1")]
    assert flags[0].startswith("r ≥ 0.99 on 100 of 160") and flags[1] is None
    led.db.execute("ALTER TABLE iterations DROP COLUMN implausible")  # as an older ledger
    led.close()
    again = Ledger(tmp_path / "ledger.sqlite")
    assert [bool(i["implausible"]) for i in again.iterations("r1")] == [True, False]
