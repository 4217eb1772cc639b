"""The process backend: the worker in a child process, isolated as far as the host allows.

Levels, strongest first (``isolation`` in every result says which one ran):

- ``bwrap``: bubblewrap with every namespace unshared (no network, own pids, own
  user), a read-only view of the filesystem, a private /tmp, only the job folder
  (read-only) and the output folder writable; it dies with its parent.
- ``unshare-net``: no network (a private network namespace), nothing else
  isolated: the candidate can read and write whatever the user can. Logged as
  degraded isolation.
- ``limits-only``: neither tool works; logged as degraded isolation.

Always: resource limits (address space, CPU time, file size, processes, no core
dumps), a fresh working folder, a scrubbed environment (no API keys), its own
process group killed whole on timeout, stdout and stderr capped by the file-size
limit.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed job."""

    timeout_s: float = 600.0
    """Wall-clock limit, enforced from the host by killing the process group."""
    memory_mb: int = 4096
    """Address-space limit (torch needs more than 1 GiB just to import)."""
    file_mb: int = 1024
    """Largest file the job may write (its arrays and its log included)."""
    nproc: int = 64
    """Processes and threads (torch needs a few even with one compute thread)."""
    cuda: bool = False
    """The job may use CUDA: no address-space cap in the process backend (a CUDA context
    reserves far more virtual memory than it uses); docker's memory cgroup still applies."""


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def pid_alive(pid) -> bool:
    """Whether `pid` (int or digits) runs on this host; a zombie has exited, so no."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def isolation_level() -> str:
    if shutil.which("bwrap") and _probe(["bwrap", "--ro-bind", "/", "/", "--unshare-all"]):
        return "bwrap"
    if shutil.which("unshare") and _probe(_unshare()):
        return "unshare-net"
    return "limits-only"


def _unshare() -> list[str]:
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-rn"]


def _needed_paths() -> list[str]:
    """The interpreter, its environment and the project: shown again over the private /tmp
    (a checkout or a virtual environment may live under /tmp)."""
    roots = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["purelib"],
             str(Path(__file__).resolve().parent.parent)}
    tmp = Path(tempfile.gettempdir()).resolve()
    return sorted(p for p in roots if Path(p).resolve().is_relative_to(tmp))


def _wrap(level: str, job: Path, out: Path, argv: list[str]) -> list[str]:
    if level == "bwrap":
        keep = [a for p in _needed_paths() for a in ("--ro-bind", p, p)]
        return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", *keep, "--ro-bind", str(job), str(job),
                "--bind", str(out), str(out),
                "--unshare-all", "--die-with-parent", "--new-session", "--chdir", str(out),
                *argv]
    if level == "unshare-net":
        return [*_unshare(), "--", *argv]
    return argv


def _limits(lim: Limits):
    def apply():
        mb = 1 << 20
        if not lim.cuda:
            resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb * mb, lim.memory_mb * mb))
        cpu = int(lim.timeout_s * 2) + 10  # 2 cores; the wall clock is the real limit
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb * mb, lim.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NPROC, (lim.nproc, lim.nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _environment() -> dict[str, str]:
    return {
        "PATH": os.defpath, "HOME": "/tmp", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
    }


@functools.cache
def _warn_degraded(level: str) -> None:  # once per process, not once per candidate
    log.warning("degraded isolation (%s): install bubblewrap or use the docker backend", level)


def run(job: Path, out: Path, lim: Limits, token: str, level: str | None = None,
        tick: Callable[[], None] | None = None) -> tuple[int, str, str, bool]:
    """Run the worker on JOB, writing into OUT: (exit code, log tail, isolation, timed out).

    `token` goes to the worker on stdin, never through the filesystem.
    """
    level = level or isolation_level()
    if level != "bwrap":
        _warn_degraded(level)
    argv = [sys.executable, "-m", "sandbox.worker", str(job), str(out)]
    log_path = out / "worker.log"
    timed_out = False
    with open(log_path, "wb") as sink:
        proc = subprocess.Popen(_wrap(level, job, out, argv), stdout=sink, stderr=sink,
                                stdin=subprocess.PIPE, cwd=out, env=_environment(),
                                start_new_session=True, preexec_fn=_limits(lim))
        try:
            proc.stdin.write(f"{token}\n".encode())
            proc.stdin.close()
        except BrokenPipeError:  # the worker died before reading: its exit code tells
            pass
        deadline = time.monotonic() + lim.timeout_s
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if tick is not None:
                    tick()
                time.sleep(0.05)
        finally:  # a timeout, Ctrl-C or any error here: no worker outlives its job
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    with open(log_path, "rb") as f:
        f.seek(max(0, log_path.stat().st_size - 4000))
        tail = f.read().decode(errors="replace")
    return proc.returncode, tail, level, timed_out
