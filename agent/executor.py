"""The executor seam: evaluations (a committed candidate's training in the sandbox) run
while the driver goes on proposing, recording and scoring.

`submit` a `Job` → a `Handle`; `wait` for some to finish; `result` is a `Done`: the
sandbox's validated outcome, where it ran and how many tries it took; `cancel` kills one.
Two executors: `LocalExecutor` (N slots on this machine, each its own sandbox, pinned to
a GPU share with CUDA_VISIBLE_DEVICES) and `agent.ray_executor.RayExecutor` (Ray tasks
with num_cpus/num_gpus per candidate, on a local instance or an existing cluster).

What every job of a run shares (the inputs, the training outputs of the train and
validation trials, the teacher and the spike counts, already zeroed outside those
trials) is a `Workload`, sent once. Biovars and the selection and test outputs are not
in it: they never leave the driver, which scores. A fault of the machinery (a worker or
node that died, a sandbox that cannot start) is retried once; a second one comes back
as a failed outcome of kind ``infrastructure``, which agent.standing never holds
against the architecture.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from agent.config import EXECUTORS
from sandbox import runner
from sandbox.watch import Cancelled

TRIES = 2
"""Tries of a job whose machinery failed: the first and one retry."""


@dataclass(frozen=True)
class Workload:
    """What every evaluation of a run shares (sent once per run)."""

    inputs: np.ndarray
    """Inputs of every trial."""
    targets: np.ndarray
    """Outputs of the train and validation trials, zero elsewhere."""
    teacher: np.ndarray
    """The input baseline's predictions, zero outside train and validation (distillation)."""
    counts: np.ndarray | None
    """Spike counts, zero outside train and validation (count losses); None: unavailable."""
    split: dict
    """The train and validation trial indices (never selection or test)."""
    train: dict
    """TrainConfig overrides of the run (seed, device, budget, …)."""
    backend: str
    """The sandbox backend: docker, process or degraded."""
    slots: int = 1
    """Jobs in flight at once (--parallel): each training's memory is the machine's share
    divided by them (sandbox.runner.evaluate_limits), so that together they fit."""


@dataclass(frozen=True)
class Job:
    """One evaluation: a committed candidate's source and how to train it."""

    key: str
    """What the driver calls it (an iteration number, a finalist's training)."""
    source: str
    latent_dim: int
    seed: int | None = None
    """The training seed instead of the run's (a finalist's reruns)."""
    teacher: bool = False
    """Send the teacher (a distillation candidate)."""
    counts: bool = False
    """Send the spike counts (a count loss)."""
    library: tuple[tuple[str, str], ...] = ()
    """(name, file) of the library blocks the source imports, in the order they load."""


@dataclass(frozen=True)
class Done:
    """A finished evaluation."""

    job: Job
    outcome: runner.Outcome
    where: str
    """The slot, node or host it ran on (the last try's)."""
    tries: int
    retried: str | None = None
    """Why the first try failed, when there was a second."""


@dataclass(eq=False)
class Handle:
    """A submitted job; `where` and `epoch` change while it runs (read, never written, by
    the driver)."""

    job: Job
    where: str = "queued"
    epoch: dict | None = None
    """The newest epoch the sandbox reported (local executor)."""
    started: float = field(default_factory=time.time)
    tries: int = 1
    retried: str | None = None
    ref: object = field(default=None, repr=False)
    """The executor's own future or task reference."""
    outcome: runner.Outcome | None = field(default=None, repr=False)
    """Set once finished (ray executor)."""


class Executor(Protocol):
    """Runs evaluations; every method is called from the driver's thread."""

    kind: str
    parallel: int
    """Candidates it runs at once."""

    def submit(self, job: Job) -> Handle: ...

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        """Those of `handles` that finished within `timeout` seconds."""

    def result(self, handle: Handle) -> Done:
        """The outcome of a handle `wait` returned."""

    def cancel(self, handle: Handle) -> None:
        """Stop it and kill its sandbox (its result is never read)."""

    def close(self) -> None:
        """Cancel what is in flight and release the workers."""


def train_job(w: Workload, job: Job, *, threads: int = 1, gpus: str | None = None,
              progress: Callable[[dict], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> runner.Outcome:
    """The one way a candidate is trained: in the sandbox, on the workload's arrays."""
    from descartes_core.training import TrainConfig

    train = dict(w.train)
    if job.seed is not None:
        train["seed"] = job.seed
    lim = runner.evaluate_limits(float(train.get("time_budget_h", TrainConfig.time_budget_h)),
                                 str(train.get("device", TrainConfig.device)), threads, gpus,
                                 slots=w.slots)
    return runner.evaluate(job.source, w.inputs, w.targets, w.split, latent_dim=job.latent_dim,
                           train=train, teacher=w.teacher if job.teacher else None,
                           counts=w.counts if job.counts else None, lim=lim,
                           backend=w.backend, progress=progress, cancelled=cancelled,
                           library=dict(job.library))


def infrastructure(job: Job, tries: int, why: str, wall_s: float) -> runner.Outcome:
    """The failed outcome of a job whose machinery failed on every try."""
    return runner.Outcome(False, "evaluate", "none", {"kind": "infrastructure", "message": (
        f"not the candidate's fault: the evaluation's machinery failed {tries} times "
        f"(last: {why})")[:2000]}, wall_s=wall_s)


def describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def visible_gpus(device: str) -> list[str]:
    """The GPU indices candidates may use: none on a CPU run or host."""
    if device == "cpu":
        return []
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda:"):
        return [device.split(":", 1)[1]] if n else []
    return [str(i) for i in range(n)]


def gpu_shares(gpus: list[str], parallel: int, per_candidate: float) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each local slot: `per_candidate` ≥ 1 gives each slot that
    many GPUs of its own, less than 1 packs slots onto GPUs in turn (several per GPU)."""
    if not gpus:
        return [None] * parallel
    k = max(1, int(per_candidate)) if per_candidate >= 1 else 1
    return [",".join(gpus[(i * k + j) % len(gpus)] for j in range(k)) for i in range(parallel)]


class LocalExecutor:
    """N slots on this machine, each job its own sandbox (a container or bubblewrap), its
    own CPU threads and its own GPU share. Threads only wait on the sandboxes."""

    kind = "local"

    def __init__(self, workload: Workload, parallel: int = 1, *, cpus_per_candidate: int = 1,
                 gpus_per_candidate: float = 1.0, device: str = "auto"):
        self.workload, self.parallel, self.threads = workload, parallel, cpus_per_candidate
        self.shares = gpu_shares(visible_gpus(device), parallel, gpus_per_candidate)
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(parallel):
            self.free.put(slot)
        self.pool = cf.ThreadPoolExecutor(parallel, thread_name_prefix="candidate")
        self.stops: dict[int, threading.Event] = {}

    def submit(self, job: Job) -> Handle:
        h = Handle(job)
        stop = self.stops[id(h)] = threading.Event()
        h.ref = self.pool.submit(self._run, h, stop)
        return h

    def _run(self, h: Handle, stop: threading.Event) -> Done:
        slot = self.free.get()
        try:
            share = self.shares[slot]
            h.where = f"local slot {slot} ({'gpu ' + share if share else 'cpu'})"
            h.started, why, retried = time.time(), "", None
            for tries in range(1, TRIES + 1):
                try:
                    out = train_job(self.workload, h.job, threads=self.threads, gpus=share,
                                    progress=lambda e: setattr(h, "epoch", e),
                                    cancelled=stop.is_set)
                    return Done(h.job, out, h.where, tries, retried)
                except Cancelled:
                    raise
                except Exception as e:  # the machinery, not the candidate: runner never
                    why = describe(e)   # raises for a candidate's fault
                    retried = retried or why
            return Done(h.job, infrastructure(h.job, tries, why, time.time() - h.started),
                        h.where, tries, retried)
        finally:
            self.free.put(slot)

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        by_future = {h.ref: h for h in handles}
        done, _ = cf.wait(list(by_future), timeout, return_when=cf.FIRST_COMPLETED)
        return [by_future[f] for f in done]

    def result(self, handle: Handle) -> Done:
        self.stops.pop(id(handle), None)
        return handle.ref.result()

    def cancel(self, handle: Handle) -> None:
        handle.ref.cancel()  # not started yet: it never will
        if (stop := self.stops.pop(id(handle), None)) is not None:
            stop.set()

    def close(self) -> None:
        for stop in self.stops.values():
            stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def build(kind: str, workload: Workload, *, parallel: int = 1, cpus_per_candidate: int = 1,
          gpus_per_candidate: float = 1.0, device: str = "auto",
          ray_address: str | None = None) -> Executor:
    """The run's executor: `local`, or `ray` (a local instance bound to 127.0.0.1 when
    `ray_address` is None, else the cluster at that address or `auto`). Every job's memory
    is a `parallel`-th of the machine's share (on a cluster, of its node's: safe, if more
    than a node with fewer jobs needs)."""
    workload = replace(workload, slots=parallel)
    if kind == "local":
        return LocalExecutor(workload, parallel, cpus_per_candidate=cpus_per_candidate,
                             gpus_per_candidate=gpus_per_candidate, device=device)
    if kind == "ray":
        from agent.ray_executor import RayExecutor

        return RayExecutor(workload, parallel, cpus_per_candidate=cpus_per_candidate,
                           gpus_per_candidate=0.0 if device == "cpu" else gpus_per_candidate,
                           address=ray_address)
    raise ValueError(f"executor {kind}: expected {', '.join(EXECUTORS)}")


