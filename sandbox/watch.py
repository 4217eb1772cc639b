"""What the host watches while a job runs, and the two ways it stops one early.

Untrusted: the job's epoch lines (only numbers pass), the size of its output folder and of
the deleted files it holds open, and whether its caller has cancelled it. The backends call
a `Watch` every few tenths of a second and kill the worker on any exception it raises.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from sandbox import protocol
from sandbox.process import Limits

MAX_OUTPUT_ENTRIES = 64
"""Files and folders a job may leave in its output folder (it needs three)."""


def descendants(root: int) -> set[int]:
    """`root` and every process below it, as the host numbers them (read from /proc: a
    container's orphans are reparented to its init, so its init's tree is the container)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read(4096).rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


class OutputOverflow(Exception):
    """The job wrote more into its output folder than its limits allow."""


class Cancelled(Exception):
    """The job was cancelled by its caller; its worker was killed."""


class Watch:
    """Called while the worker runs: reads its epoch lines as they come (untrusted, so only
    numbers pass) and, once a second, stops a job whose output folder outgrows its limit
    (the file-size limit caps each file, not how many there are)."""

    def __init__(self, out: Path, lim: Limits, report: Callable[[dict], None] | None,
                 cancelled: Callable[[], bool] | None = None):
        self.path, self.report, self.offset = out / protocol.PROGRESS, report, 0
        self.cancelled = cancelled
        self.out, self.max_bytes, self.next_scan = out, lim.file_mb << 20, 0.0

    def __call__(self, pids: Callable[[], set[int]] | None = None) -> None:
        """`pids`: the job's processes as the host numbers them, where the backend knows."""
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("cancelled")  # the backend kills the worker on its way out
        if time.monotonic() >= self.next_scan:
            self.next_scan = time.monotonic() + 1.0
            self._scan()
            if pids is not None:
                self._held(pids())
        if self.report is not None:
            self._progress()

    def _held(self, pids: set[int]) -> None:
        """Files the job deleted but holds open take the disk all the same (a red team
        filled it so, past the folder scan): their blocks count against the same cap."""
        dev, seen, total = self.out.stat().st_dev, set(), 0
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:  # gone, or not ours to read
                continue
            for fd in fds:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_dev == dev and st.st_nlink == 0 \
                        and (st.st_ino not in seen):
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
        if total > self.max_bytes:
            raise OutputOverflow(f"holds more than {self.max_bytes >> 20} MiB of deleted files "
                                 "open on the output folder's disk")

    def _scan(self) -> None:
        total, count, todo = 0, 0, [self.out]
        while todo:
            try:
                entries = list(os.scandir(todo.pop()))
            except OSError:
                continue
            for e in entries:
                count += 1
                if e.is_dir(follow_symlinks=False):
                    todo.append(Path(e.path))
                else:
                    total += e.stat(follow_symlinks=False).st_size
                if count > MAX_OUTPUT_ENTRIES or total > self.max_bytes:
                    raise OutputOverflow(f"wrote more than {MAX_OUTPUT_ENTRIES} entries or "
                                         f"{self.max_bytes >> 20} MiB into its output folder")

    def _progress(self) -> None:
        try:
            f = protocol.open_regular(self.path, 1 << 40)
        except protocol.ProtocolError:
            return
        if f is None:
            return
        with f:
            f.seek(self.offset)
            chunk = f.read(1 << 16)
        lines = chunk.split(b"\n")[:-1]  # a line still being written waits for next time
        self.offset += sum(len(line) + 1 for line in lines)
        if not lines and len(chunk) == 1 << 16:  # no epoch line is this long: skip it whole
            self.offset += len(chunk)
        if lines and (d := protocol.read_progress_line(lines[-1])) is not None:
            self.report(d)  # only the newest epoch matters to a progress bar
