"""The process backend: the worker in a child process, isolated as far as the host allows.

Levels, strongest first (``isolation`` in every result says which one ran):

- ``bwrap``: bubblewrap with every namespace unshared (no network, own pids, own
  user) over an empty root that shows only what the job needs (``VISIBLE``): the
  system's ``/usr`` (libraries), the interpreter and its standard library (its own
  site-packages hidden), the environment's site-packages at ``/opt/site``, the few code
  files that train a model (``WORKER_FILES``) at ``/opt/descartes``, the job folder
  read-only and the output folder writable, a private ``/tmp``, ``/dev`` and ``/proc``.
  No ``$HOME``, ``/etc``, caches, data, run folders, checkouts or other jobs. It dies
  with its parent.
- ``unshare-net``: no network (a private network namespace), nothing else
  isolated: the candidate can read and write whatever the user can. Degraded: only
  with ``--allow-degraded``.
- ``limits-only``: neither tool works; degraded likewise.

Every level: the job in a cgroup leaf of its own (``sandbox.cgroup``) capping the memory
and the tasks of its whole process tree, where the host allows it (``isolation`` then
reads e.g. ``bwrap+cgroup1``; a job that meets its memory cap is killed whole, and its
exit code says oom). Without it the limits below bind each process alone, and
``--sandbox process`` refuses to train (sandbox.runner.resolve_backend).

Always: per-process resource limits (address space, CPU time, file size, processes, no
core dumps) as a second layer, a fresh working folder, a scrubbed environment (no API
keys), its own process group killed whole on timeout, stdout and stderr capped by the
file-size limit.
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox import cgroup

log = logging.getLogger(__name__)

FORK_LOCK = threading.Lock()
"""Held while a worker is forked and while the driver scores: a fork from one thread while
another is inside OpenBLAS leaves the driver's BLAS thread pool spinning forever (its
at-fork handler shuts the pool down under the running call). Seen with --parallel and the
finalists' reruns, which start sandboxes from executor threads."""


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
    threads: int = 1
    """CPU threads of the job's BLAS and torch (several jobs share a host's cores)."""
    gpus: str | None = None
    """CUDA_VISIBLE_DEVICES of the job (a share of the host's GPUs); None: all of them."""

    @property
    def pids(self) -> int:
        """Tasks (processes and threads) of the whole job: its cgroup's pids.max, docker's
        pids_limit. Twice `nproc`: the interpreter's, torch's and CUDA's threads count too."""
        return self.nproc * 2


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


BWRAP_ISOLATION = ("bwrap", "--unshare-all", "--unshare-user", "--disable-userns")
"""Every namespace unshared, and no user namespace of the job's own (bubblewrap ≥ 0.8)."""


def isolation_level() -> str:
    if shutil.which("bwrap") and _probe([*BWRAP_ISOLATION, "--ro-bind", "/", "/"]):
        return "bwrap"
    if shutil.which("unshare") and _probe(_unshare()):
        return "unshare-net"
    return "limits-only"


def _unshare() -> list[str]:
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-rn"]


PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKER_FILES = (
    "descartes_core/__init__.py", "descartes_core/contract.py", "descartes_core/training.py",
    "descartes_core/losses.py", "descartes_core/stiff.py", "descartes_core/events.py",
    "descartes_core/scoring.py",
    "sandbox/__init__.py", "sandbox/worker.py", "sandbox/protocol.py", "sandbox/blocks.py",
)
"""The only project files a job sees: what builds, trains and rolls out a model. Never the
simulator, the trial design or dataset generation (``circuit``, ``trials``, ``dataset``,
…): a candidate that runs arbitrary code must find nothing there from which the hidden
variables could be recomputed (tests/test_sandbox_mounts.py checks the closure)."""
SITE, CODE, JOB, OUT = "/opt/site", "/opt/descartes", "/job", "/out"
TMP_MB = 256
"""The private /tmp of a job (memory of the host's, so capped; docker's is 64 MB)."""
VISIBLE = ("/usr", "/bin", "/lib", "/lib64", SITE, CODE, JOB, OUT, "/tmp", "/dev", "/proc")
"""Every top-level path a bwrap job can see, besides the interpreter's own folders."""


def interpreter() -> Path:
    """The real interpreter binary (a virtual environment's python is a link to it)."""
    return Path(sys.executable).resolve()


def site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(str(Path(paths[k]).resolve()) for k in ("purelib", "platlib")))


def _bwrap(job: Path, out: Path, lim: Limits) -> list[str]:
    base = Path(sys.base_prefix).resolve()
    stdlib = Path(sysconfig.get_paths(vars={"base": str(base), "platbase": str(base)},
                                      scheme=sysconfig.get_default_scheme())["stdlib"])
    # --disable-userns: inside a user namespace of its own a job is root enough to mount
    # cgroupfs, lift its own caps and write the host's other cgroup hierarchies
    args = [*BWRAP_ISOLATION, "--uid", "65534", "--gid", "65534",
            "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64"):  # merged-/usr systems link these into /usr
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_MB << 20), "--tmpfs", "/tmp"]
    if not interpreter().is_relative_to("/usr"):
        args += ["--ro-bind", str(interpreter()), str(interpreter())]
        for lib in sorted((base / "lib").glob("libpython*")):
            args += ["--ro-bind", str(lib), str(lib)]
    if not stdlib.is_relative_to("/usr"):
        args += ["--ro-bind", str(stdlib), str(stdlib)]
    include = Path(sysconfig.get_paths(vars={"base": str(base), "platbase": str(base)},
                                       scheme=sysconfig.get_default_scheme())["include"])
    if include.is_dir() and not include.is_relative_to("/usr"):  # C headers, for a job that
        args += ["--ro-bind", str(include), str(include)]  # compiles its step (stiff.fast_step)
    if (stdlib / "site-packages").is_dir():  # the base interpreter's own packages: not ours
        args += ["--size", "4096", "--tmpfs", str(stdlib / "site-packages"),
                 "--remount-ro", str(stdlib / "site-packages")]
    for i, site in enumerate(site_packages()):
        args += ["--ro-bind", site, SITE if i == 0 else f"{SITE}{i}"]
    for rel in WORKER_FILES:
        args += ["--ro-bind", str(PROJECT_ROOT / rel), f"{CODE}/{rel}"]
    if lim.cuda:
        args += [a for dev in sorted(Path("/dev").glob("nvidia*"))
                 for a in ("--dev-bind", str(dev), str(dev))]
    return [*args, "--ro-bind", str(job), JOB, "--bind", str(out), OUT, "--remount-ro", "/dev",
            "--remount-ro", "/", "--chdir", OUT]


def python_path(n_sites: int) -> str:
    return ":".join([SITE, *(f"{SITE}{i}" for i in range(1, n_sites)), CODE])


def _wrap(level: str, job: Path, out: Path, lim: Limits) -> list[str]:
    """The command line of the worker at `level`."""
    if level == "bwrap":
        return [*_bwrap(job, out, lim), str(interpreter()), "-s", "-m", "sandbox.worker",
                JOB, OUT]
    argv = [sys.executable, "-s", "-m", "sandbox.worker", str(job), str(out)]
    if level == "unshare-net":
        return [*_unshare(), "--", *argv]
    return argv


NOFILE = 4096
"""Open files per process: torch needs a few hundred; the host reads every one a job holds
(sandbox.watch), so their number is bounded."""


def _preexec(lim: Limits, group: cgroup.Group | None):
    def apply():  # in the child, before exec: whatever it starts inherits both
        if group is not None:
            group.join()
        mb = 1 << 20
        if not lim.cuda:
            resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb * mb, lim.memory_mb * mb))
        cpu = int(lim.timeout_s * 2) + 10  # 2 cores; the wall clock is the real limit
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb * mb, lim.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NPROC, (lim.nproc, lim.nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    return apply


def thread_environment(lim: Limits) -> dict[str, str]:
    """The job's thread count and GPU share, as the environment torch reads at import."""
    env = {k: str(max(1, lim.threads)) for k in
           ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if lim.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = lim.gpus
    return env


def _environment(level: str, lim: Limits) -> dict[str, str]:
    env = {
        "PATH": os.defpath, "HOME": "/tmp", "LANG": "C.UTF-8", **thread_environment(lim),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1",
    }
    if level == "bwrap":
        env["PYTHONPATH"] = python_path(len(site_packages()))
    return env


@functools.cache
def _warn_degraded(level: str) -> None:  # once per process, not once per candidate
    log.warning("degraded isolation (%s): install bubblewrap or use the docker backend", level)


@functools.cache
def _warn_unbound() -> None:
    log.warning("no cgroup can bind a job here (%s): its limits bind each process alone",
                cgroup.why_not())


def run(job: Path, out: Path, lim: Limits, level: str,
        tick: Callable[[], None] | None = None) -> tuple[int, str, str, bool]:
    """Run the worker on JOB, writing into OUT: (exit code, log tail, isolation, timed out).
    A job the kernel stopped at its memory cap exits with -9 (SIGKILL), as docker's
    OOMKilled gives 137."""
    if level != "bwrap":
        _warn_degraded(level)
    group = cgroup.create(lim.memory_mb, lim.pids)
    if group is None:
        _warn_unbound()
    log_path = out.parent / "worker.log"  # outside OUT: the candidate cannot replace it
    timed_out = False
    try:
        with open(log_path, "wb") as sink:
            with FORK_LOCK:
                proc = subprocess.Popen(_wrap(level, job, out, lim), stdout=sink, stderr=sink,
                                        stdin=subprocess.DEVNULL, cwd=out,
                                        env=_environment(level, lim), start_new_session=True,
                                        preexec_fn=_preexec(lim, group))
            deadline = time.monotonic() + lim.timeout_s
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        timed_out = True
                        break
                    if group is not None and group.oom_kills():
                        break  # v1 kills one process at the cap; the job goes whole
                    if tick is not None:
                        tick(group.pids if group is not None else None)
                    time.sleep(0.05)
            finally:  # a timeout, Ctrl-C or any error here: no worker outlives its job
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        rc = proc.returncode
        if group is not None and group.oom_kills():
            rc = -signal.SIGKILL  # even where the worker survived a child's kill and answered
    finally:  # what left the process group (setsid, daemons) is still in the cgroup
        if group is not None:
            group.remove()
    with open(log_path, "rb") as f:
        f.seek(max(0, log_path.stat().st_size - 4000))
        tail = f.read().decode(errors="replace")
    return rc, tail, level if group is None else f"{level}+{group.kind}", timed_out
