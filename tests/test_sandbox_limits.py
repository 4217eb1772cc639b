"""Every limit binds the whole job, on both backends: children that together outgrow the
job's memory cap get it killed at the cap (oom), a fork bomb stops at its task cap, and a
training job's memory is the machine's share divided by the jobs in flight.

The jobs bypass the policy (``runner.run_job``): the limits must hold with arbitrary code
running in the job. Each breach prints a BREACH line into the job's log, and lets the
shape check pass, where a limit that binds one process at a time would let it through.
With the process backend's cgroup leaf off, both attacks pass on bubblewrap (seen when the
test was written: three children held 1.1 GiB each beside their parent under a 3 GiB cap,
and 300 forks passed RLIMIT_NPROC 64).
"""

import os
import sys

import numpy as np
import pytest
from test_sandbox import candidate

from agent import cli, executor
from agent.executor import Job, Workload
from descartes_core.dataset import SimulationSpec, cached_or_simulated
from sandbox import cgroup, process, runner
from sandbox.process import Limits

CAP_MB = 3072
"""The job's memory: the least a job importing torch runs under, as RLIMIT_AS maps torch's
libraries (about 3 GiB of address space) before anything is allocated."""
CHILDREN, CHILD_MB = 3, 1100
"""Each child far under the cap on its own, together (with their parent) well over it."""

HOLD = f'''
import os, sys, time
child = "b = b'x' * ({CHILD_MB} << 20)\\nopen('/out/held-%d', 'w').close()\\ntime.sleep(60)"
pids = []
for i in range({CHILDREN}):
    pid = os.fork()
    if pid == 0:  # a fresh interpreter: its address space is its own allocation alone
        os.execv(sys.executable, [sys.executable, "-S", "-c", "import time\\n" + child % i])
    pids.append(pid)
end = time.monotonic() + 60
while len([n for n in os.listdir("/out") if n.startswith("held-")]) < {CHILDREN}:
    if time.monotonic() > end or any(os.waitpid(p, os.WNOHANG) != (0, 0) for p in pids):
        raise RuntimeError("a child died before all held their memory")
    time.sleep(0.05)
print("BREACH: {CHILDREN} children hold {CHILD_MB} MiB each at once", flush=True)
for p in pids:
    os.kill(p, 9)
'''

FORKS = 300
BOMB = f'''
import os
r, w = os.pipe()
n = 0
try:
    for n in range(1, {FORKS} + 1):
        if os.fork() == 0:  # each child waits until its parent has gone
            os.close(w)
            os.read(r, 1)
            os._exit(0)
except OSError as e:
    raise RuntimeError(f"fork {{n}} of {FORKS} failed: {{e}}")
print("BREACH: {FORKS} forks", flush=True)
'''


def test_children_that_together_outgrow_the_cap_are_killed_at_it(backend):
    out = runner.run_job("check", candidate(HOLD), {"latent_dim": 8}, None,
                         Limits(timeout_s=120.0, memory_mb=CAP_MB), backend=backend)
    assert "BREACH" not in out.log_tail, out.log_tail[-500:]
    assert not out.ok and out.error["kind"] == "oom", (out.error, out.log_tail[-500:])
    assert out.isolation in ("docker", "bwrap+cgroup1", "bwrap+cgroup2")


def test_a_fork_bomb_stops_at_the_task_cap(backend):
    lim = Limits(timeout_s=120.0, nproc=64)
    out = runner.run_job("check", candidate(BOMB), {"latent_dim": 8}, None, lim,
                         backend=backend)
    assert "BREACH" not in out.log_tail, out.log_tail[-500:]
    assert not out.ok and f"of {FORKS} failed" in out.error["message"], out.error
    n = int(out.error["message"].split("fork ")[1].split(" ")[0])
    assert n <= lim.pids  # the job's own threads count too


LIFT = """
import subprocess
# root in a user namespace of its own, a job could mount cgroupfs and lift its own caps
try:
    done = subprocess.run(["unshare", "-UrmC", "sh", "-c", "mkdir -p /tmp/cg && "
                           "mount -t cgroup -o pids p /tmp/cg && echo max > /tmp/cg/pids.max"],
                          capture_output=True, text=True, timeout=20)
    print("unshare:", done.returncode, done.stderr[-200:], flush=True)
except OSError as e:
    print("unshare:", e, flush=True)
""" + BOMB


def test_a_job_cannot_lift_its_own_caps_from_a_namespace_of_its_own(backend):
    """Found by a red team: bubblewrap let a job open a user namespace, mount its cgroup
    and write `max` into its own pids.max (and freeze host processes through the other
    hierarchies). It may open none (--disable-userns); docker's seccomp refuses unshare."""
    lim = Limits(timeout_s=120.0, nproc=64)
    out = runner.run_job("check", candidate(LIFT), {"latent_dim": 8}, None, lim,
                         backend=backend)
    assert "BREACH" not in out.log_tail, out.log_tail[-500:]
    assert not out.ok and f"of {FORKS} failed" in out.error["message"], out.error


def _ram_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)


def test_a_training_job_gets_the_machines_share_divided_by_the_slots():
    share = min(16384, 0.6 * _ram_mb())
    assert runner.evaluate_limits(1.0, "cpu").memory_mb == int(share)
    for slots in (2, 3, 8):
        got = runner.evaluate_limits(1.0, "cpu", slots=slots).memory_mb
        assert got == int(min(16384, 0.6 * _ram_mb() / slots)) and got * slots <= 0.6 * _ram_mb()
    assert runner.CHECK_LIMITS.memory_mb == 4096  # a shape check keeps its own cap


CAP_INSIDE = """
import os, resource
cap = resource.getrlimit(resource.RLIMIT_AS)[0]  # bubblewrap's second layer
for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    if cap == resource.RLIM_INFINITY and os.path.exists(f):  # docker's, cgroup v2 or v1
        cap = int(open(f).read())
raise RuntimeError(f"cap {cap >> 20} MiB")
"""


def test_the_executor_gives_each_of_its_parallel_jobs_its_share(backend):
    """--parallel 3: the training job itself finds a third of the machine's share as its
    memory cap."""
    z = np.zeros((4, 50, 21), np.float32)
    work = Workload(z, np.zeros((4, 50, 20), np.float32), np.zeros((4, 50, 20), np.float32),
                    None, {"train": [0, 1], "val": [2]}, {"max_epochs": 1, "device": "cpu"},
                    backend)
    ex = executor.build("local", work, parallel=3, device="cpu")
    try:
        h = ex.submit(Job("0001", candidate(CAP_INSIDE), 8))
        assert ex.wait([h], 120) == [h]
        done = ex.result(h)
    finally:
        ex.close()
    want = int(min(16384, 0.6 * _ram_mb() / 3))
    assert f"cap {want} MiB" in done.outcome.error["message"], done.outcome.error


def test_without_a_cgroup_bubblewrap_checks_but_refuses_to_train(monkeypatch, capsys, tmp_path):
    """Where no cgroup can bind a job, `--sandbox process` still runs a shape check (its
    isolation says the limits bind each process alone) but `run` stops with one line
    naming why and the fix."""
    if process.isolation_level() != "bwrap":
        pytest.skip("bubblewrap is not installed")
    why = "cgroup1: [Errno 13] Permission denied"
    monkeypatch.setattr(cgroup, "_probe", lambda: (None, why))

    def main(*args):
        monkeypatch.setattr(sys, "argv", ["descartes-agent", *args])
        with pytest.raises(SystemExit) as e:
            cli.main()
        return e.value.code or 0, capsys.readouterr()

    model = tmp_path / "m.py"
    model.write_text(candidate("pass"))
    code, got = main("check", str(model), "--sandbox", "process")
    assert code == 0 and "(bwrap)" in got.out, got
    data, _ = cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120, burn_in_ms=100.0))
    code, got = main("run", "--data-dir", str(data), "--templates", "", "--sandbox", "process",
                     "--max-llm-expansions", "0", "--run-dir", str(tmp_path / "runs"))
    line = got.err.strip()
    assert code == 2 and "\n" not in line and "Traceback" not in line, got
    assert why in line and "--allow-degraded" in line
    assert runner.resolve_backend("process", allow_degraded=True) == "degraded"


HIDE = """
import os, time
held = []
for i in range(4):  # 4 × 40 MiB deleted but held open: the folder looks empty
    f = open(f"/out/x{i}", "wb")
    os.unlink(f"/out/x{i}")
    os.posix_fallocate(f.fileno(), 0, 40 << 20)
    held.append(f)
time.sleep(8)  # the host looks once a second
print("BREACH: 160 MiB held past a 64 MiB cap", flush=True)
"""


def test_deleted_files_held_open_count_against_the_output_cap(backend):
    """Found by a red team: files unlinked but held open filled the host's disk past the
    output cap, which the folder scan never saw. Each is under the per-file limit."""
    out = runner.run_job("check", candidate(HIDE), {"latent_dim": 8}, None,
                         Limits(timeout_s=120.0, file_mb=64), backend=backend)
    assert "BREACH" not in out.log_tail, out.log_tail[-500:]
    assert not out.ok and "deleted files" in out.error["message"], out.error
