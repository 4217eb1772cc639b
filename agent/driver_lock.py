"""One run folder, one driver: an exclusive lock on ``driver.lock`` in the run's folder.

A driver holds the lock from the moment it opens the run until it stops. The kernel
releases it when the process dies however it dies (kill -9 included), so a crashed run
can be resumed at once and a live one never twice. It is ``flock``: on a local disk it
holds between processes and between two opens in one process; on NFS, Linux carries it
as a POSIX lock through the server, so it also holds between hosts sharing the run
directory. A lease-less pid file could do neither (a pid means nothing on another host,
and a recycled pid looks alive). The file also says who holds it, for the error message;
what it says is never what decides.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK = "driver.lock"


class RunLocked(Exception):
    """Another driver holds this run; the message names it."""


def _holder(f) -> str:
    f.seek(0)
    try:
        d = json.loads(f.read(4096) or "{}")
        return f"pid {int(d['pid'])} on {str(d['host'])[:100]} since {str(d['since'])[:40]}"
    except (ValueError, KeyError, TypeError):
        return "another driver"


class DriverLock:
    """The lock of one run folder; `acquire` or RunLocked, `release` when done."""

    def __init__(self, folder: Path | str):
        self.path = Path(folder) / LOCK
        self._file = None

    def acquire(self) -> None:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(f)
            f.close()
            raise RunLocked(f"{self.path.parent.name} is driven by {who}: one driver per "
                            "run (stop that one, or wait for it to finish)") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def held(folder: Path | str) -> bool:
    """Whether a driver holds the run in `folder` now (a probe that takes and drops the lock
    when it is free)."""
    path = Path(folder) / LOCK
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
