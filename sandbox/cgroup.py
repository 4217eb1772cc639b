"""Limits that bind a process backend's job as a whole: each job in a cgroup leaf of its own.

RLIMIT_AS and RLIMIT_NPROC bind one process each (and RLIMIT_NPROC nothing at all once a
user namespace maps the job to root): a job that forks holds its cap once per child. A
cgroup holds the job's whole process tree, since a child starts in its parent's group.

Two kinds, the first that works (``kind``):

- ``cgroup2``: a leaf under the driver's own cgroup of the unified hierarchy, with
  ``memory.max``, ``memory.swap.max`` 0, ``memory.oom.group`` (the kernel kills the whole
  job at its cap) and ``pids.max``. Needs the memory and pids controllers delegated to the
  driver's cgroup's children: either already enabled there, or enabled by this module,
  which the kernel allows only while that cgroup holds no process (a driver alone in its
  cgroup, e.g. under ``systemd-run --scope -p Delegate=yes``, first moves itself into a
  leaf ``descartes-driver``).
- ``cgroup1``: leaves under the driver's own cgroups of the v1 memory and pids
  hierarchies, with ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where
  swap is accounted) and ``pids.max``. v1 has no oom.group: the host kills the whole leaf
  once its ``oom_kill`` count moves (`Group.oom_kills`).

The job joins its leaf between fork and exec (`Group.join`), so every descendant is in it;
inside, bubblewrap's cgroup namespace and the absence of /sys leave it no way out. After
the job, whatever is left in the leaf is killed and the leaf removed.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "descartes-job-"
DRIVER_LEAF = "descartes-driver"
NEEDED = ("memory", "pids")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:  # one write(2): a cgroup file takes its value whole
        f.write(value)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fs type, mount root, mount point, super options) of each cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fstype, fields[3], fields[4], set(fields[sep + 3].split(","))))
    return found


def _own(fstype: str, controller: str | None) -> Path | None:
    """The driver's own cgroup folder in the hierarchy of `controller` (v1) or the unified
    one (v2, `controller` None), where it is mounted and reachable."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hier, controllers, path = line.split(":", 2)
        if (controller is None) != (hier == "0") or (
                controller is not None and controller not in controllers.split(",")):
            continue
        for kind, root, point, opts in _mounts():
            if kind != fstype or (controller is not None and controller not in opts):
                continue
            if path == root or path.startswith(root.rstrip("/") + "/"):
                return Path(point) / path[len(root):].lstrip("/")
    return None


def _v2_parent() -> Path:
    """The unified-hierarchy cgroup whose children get the memory and pids controllers."""
    own = _own("cgroup2", None)
    if own is None:
        raise OSError("no cgroup2 hierarchy holds the driver")
    if own.name == DRIVER_LEAF:  # moved there by an earlier call
        own = own.parent
    if not set(NEEDED) <= set((own / "cgroup.controllers").read_text().split()):
        raise OSError(f"{own} offers no memory and pids controllers")
    if set(NEEDED) <= set((own / "cgroup.subtree_control").read_text().split()):
        return own
    try:
        _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in NEEDED))
    except OSError as e:
        # A cgroup holding processes cannot give domain controllers to its children: a
        # driver alone in its cgroup moves into a leaf of its own first; never anyone else.
        if e.errno != errno.EBUSY:
            raise
        if (own / "cgroup.procs").read_text().split() != [str(os.getpid())]:
            raise OSError(f"other processes share {own}, so it cannot give memory and pids "
                          "to children (run the driver in a cgroup of its own)") from None
        (own / DRIVER_LEAF).mkdir(exist_ok=True)
        _write(own / DRIVER_LEAF / "cgroup.procs", str(os.getpid()))
        _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in NEEDED))
    return own


def _v1_parents() -> tuple[Path, Path]:
    parents = tuple(_own("cgroup", c) for c in NEEDED)
    if None in parents:
        raise OSError("no cgroup v1 memory and pids hierarchies hold the driver")
    return parents


@dataclass(frozen=True)
class Group:
    """One job's leaf: one folder on v2, a memory and a pids folder on v1."""

    kind: str
    """cgroup2 or cgroup1."""
    dirs: tuple[Path, ...]

    def join(self) -> None:
        """Move the calling process in (the job's child, between fork and exec)."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:  # plain system calls: this runs in a child forked from threads
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def oom_kills(self) -> int:
        """Processes of the job the kernel killed at its memory cap so far."""
        name = "memory.events" if self.kind == "cgroup2" else "memory.oom_control"
        for line in (self.dirs[0] / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        """The host's numbers of every process in the leaf."""
        pids: set[int] = set()
        for d in self.dirs:
            try:
                pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:  # already removed
                continue
        return pids

    def kill(self) -> None:
        """SIGKILL everything in the leaf, until it is empty (a fork racing the kill is
        caught on the next pass; pids.max bounds how many there can be)."""
        if self.kind == "cgroup2" and (self.dirs[0] / "cgroup.kill").exists():
            _write(self.dirs[0] / "cgroup.kill", "1")
        deadline = time.monotonic() + 10.0
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the leaf (its last processes take a moment to go;
        one stuck in the kernel leaves an empty-to-be folder behind, not a failed job)."""
        self.kill()
        for d in self.dirs:
            deadline = time.monotonic() + 10.0
            while d.exists():
                try:
                    _rmdir_tree(d)
                except OSError as e:
                    if time.monotonic() > deadline:
                        log.warning("cgroup leaf %s stays: %s", d, e)
                        break
                    time.sleep(0.02)


def _rmdir_tree(d: Path) -> None:
    """Remove a cgroup and any it holds, deepest first (a cgroup folder holds only the
    kernel's files, which go with it; a child group makes rmdir fail with EBUSY)."""
    for sub, _, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
        os.rmdir(sub)


def _sweep(parent: Path) -> None:
    """Leaves of drivers that died (killed with -9): their jobs died with them (bubblewrap
    dies with its parent), the folders stay until removed."""
    for d in parent.glob(f"{PREFIX}*"):
        owner = d.name[len(PREFIX):].split("-")[0]
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            try:
                _rmdir_tree(d)
            except OSError:  # still populated: its own driver's sweep or the kernel's turn
                pass
        except (ValueError, PermissionError):
            continue


def _make(kind: str, memory_mb: int, pids: int) -> Group:
    name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    mem = str(memory_mb << 20)
    if kind == "cgroup2":
        parent = _v2_parent()
        _sweep(parent)
        leaf = parent / name
        leaf.mkdir()
        group = Group(kind, (leaf,))
        try:
            _write(leaf / "memory.max", mem)
            if (leaf / "memory.swap.max").exists():  # only where swap is accounted
                _write(leaf / "memory.swap.max", "0")
            if (leaf / "memory.oom.group").exists():  # else the host kills it (oom_kills)
                _write(leaf / "memory.oom.group", "1")
            _write(leaf / "pids.max", str(pids))
        except OSError:
            group.remove()
            raise
        return group
    mem_parent, pids_parent = _v1_parents()
    for parent in (mem_parent, pids_parent):
        _sweep(parent)
    (mem_parent / name).mkdir()
    group = Group(kind, (mem_parent / name, pids_parent / name))
    try:
        (pids_parent / name).mkdir()
        _write(mem_parent / name / "memory.limit_in_bytes", mem)
        if (mem_parent / name / "memory.memsw.limit_in_bytes").exists():  # swap accounted
            _write(mem_parent / name / "memory.memsw.limit_in_bytes", mem)
        _write(pids_parent / name / "pids.max", str(pids))
    except OSError:
        group.remove()
        raise
    return group


@functools.cache
def _probe() -> tuple[str | None, str]:
    """(the kind that works here or None, why none does): one leaf made and removed."""
    reasons = []
    for kind in ("cgroup2", "cgroup1"):
        try:
            _make(kind, 64, 16).remove()
            return kind, ""
        except OSError as e:
            reasons.append(f"{kind}: {e}")
    return None, "; ".join(reasons)


def kind() -> str | None:
    """cgroup2 or cgroup1, whichever binds a job here; None: neither can."""
    return _probe()[0]


def why_not() -> str:
    """Why no cgroup binds a job here (one line), or ''."""
    return _probe()[1]


def create(memory_mb: int, pids: int) -> Group | None:
    """A fresh leaf capping its members together at `memory_mb` MiB (no swap) and `pids`
    tasks; None where no cgroup can bind a job here (a failure past the probe raises)."""
    found = kind()
    return None if found is None else _make(found, memory_mb, pids)
