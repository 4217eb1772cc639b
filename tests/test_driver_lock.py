"""One run, one driver: the run folder's lock, held by whichever process drives it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from agent import driver_lock, runs
from agent.driver_lock import DriverLock, RunLocked
from agent.ledger import Ledger

HOLD = ("import sys, time\nfrom agent.driver_lock import DriverLock\n"
        "lock = DriverLock(sys.argv[1])\nlock.acquire()\nprint('held', flush=True)\n"
        "time.sleep(600)\n")


@pytest.fixture
def run(tmp_path):
    """A run folder whose ledger says 'running', as a driver leaves it."""
    folder = tmp_path / "20261202-000000-abcd"
    folder.mkdir()
    Ledger(folder / "ledger.sqlite").start_run(folder.name, {}, "fp")
    return runs.Run(folder.name, folder)


@pytest.fixture
def holder(run):
    """Another process driving the run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run.dir)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_second_driver_is_refused_and_named_until_the_first_lets_go(run, holder):
    with pytest.raises(RunLocked) as e:
        DriverLock(run.dir).acquire()
    assert f"pid {holder.pid} on {socket.gethostname()}" in str(e.value)
    assert run.state() == "running"
    os.killpg(holder.pid, signal.SIGKILL)  # a crash: the kernel lets the lock go
    holder.wait()
    assert run.state() == "crashed"
    lock = DriverLock(run.dir)
    lock.acquire()  # resumable at once
    assert driver_lock.held(run.dir)
    lock.release()


def test_two_opens_in_one_process_exclude_each_other(run):
    first = DriverLock(run.dir)
    first.acquire()
    with pytest.raises(RunLocked):
        DriverLock(run.dir).acquire()
    first.release()
    DriverLock(run.dir).acquire()


def test_what_the_file_says_decides_nothing(run):
    """A lock file naming this very (live) process, with no lock behind it, is a crashed run:
    the state is the kernel's lock, never a pid guess (a pid means nothing on another host)."""
    (run.dir / driver_lock.LOCK).write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "since": time.ctime()}))
    assert run.state() == "crashed"


def test_resume_of_a_run_another_process_drives_is_refused(run, holder):
    done = subprocess.run([sys.executable, "-c", "from agent.cli import main; main()", "run",
                           "--resume", run.id, "--run-dir", str(run.dir.parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stderr + done.stdout
    assert "still running" in said and "one driver" in said
