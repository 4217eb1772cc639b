"""The Ray executor: each evaluation a Ray task with `num_cpus`/`num_gpus` per candidate
(fractional GPUs pack several candidates onto one), its sandbox started on the node that
runs it.

Without an address it starts a Ray instance of its own, bound to 127.0.0.1 with the
dashboard and usage statistics off, and stops it at the end; a driver killed with -9
takes that instance and its tasks with it. With an address (`auto` or HOST:PORT) it joins
an existing cluster, whose nodes must run this project's environment; Ray ends a dead
driver's tasks there. The workload goes to the object store once per run. A task whose
worker or node dies is retried once wherever Ray places it, then comes back as
``infrastructure``. A small actor tells the driver where each task runs, and each task
whether it was cancelled.

A cancelled task stops itself: it sees the cancel within a second, and its sandbox is
killed and removed on the way out. Only one that has not ended after CANCEL_GRACE_S is
killed, by Ray; its worker's clean-up never runs then, so the executor removes the task's
containers itself, by their label (the task's id), on every node.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence

from agent.executor import (
    TRIES,
    Done,
    Handle,
    Job,
    Workload,
    describe,
    infrastructure,
    train_job,
)
from sandbox import docker_backend
from sandbox.watch import Cancelled

CANCEL_GRACE_S = 15.0
"""How long a cancelled task has to stop itself before Ray kills it (it takes a second or
two: the cancel, then its sandbox's removal)."""


def _where() -> str:
    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    return f"ray node {node} ({socket.gethostname()}, pid {os.getpid()})"


class _Asked:
    """A task's `cancelled()`: whether the driver cancelled it, asked of the board at most
    once a second (the sandbox calls it many times a second)."""

    def __init__(self, board, tag: str):
        self.board, self.tag, self.yes, self.next = board, tag, False, 0.0

    def __call__(self) -> bool:
        import ray

        if not self.yes and time.monotonic() >= self.next:
            self.next = time.monotonic() + 1.0
            try:
                self.yes = ray.get(self.board.cancelled.remote(self.tag), timeout=5)
            except ray.exceptions.RayError:  # no answer: asked again, and a kill comes later
                pass
        return self.yes


def _train_on_node(workload: Workload, job: Job, threads: int, board, tag: str) -> tuple:
    """The task: train in a sandbox on this node, with the GPUs Ray gave it; its containers
    carry its task id."""
    import ray

    where = _where()
    board.mark.remote(tag, where)
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())  # "": none were reserved
    try:
        with docker_backend.job_label(ray.get_runtime_context().get_task_id()):
            return train_job(workload, job, threads=threads, gpus=gpus,
                             cancelled=_Asked(board, tag)), where
    except Cancelled:  # its sandbox is gone; a value, not an error nobody would read
        return None, where


def _remove_containers(task_ids: list[str]) -> None:
    """On one node: the containers of these tasks, killed before their clean-up ran."""
    c = docker_backend.client()
    if c is not None:
        for task_id in task_ids:
            docker_backend.remove_job(c, task_id)


def _token_auth_as_ray_start_does() -> None:
    """`ray start` turns token authentication on when a token is at hand (~/.ray/auth_token
    or RAY_AUTH_TOKEN); a driver joining it must do the same, which ray.init does not."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray: RAY_AUTH_MODE=token is the user's to set
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class _Board:
    """Where each job runs, as its task reports it, and which the driver cancelled."""

    def __init__(self):
        self.where: dict[str, str] = {}
        self.stopped: set[str] = set()

    def mark(self, key: str, where: str) -> None:
        self.where[key] = where

    def snapshot(self) -> dict[str, str]:
        return dict(self.where)

    def cancel(self, key: str) -> None:
        self.stopped.add(key)

    def cancelled(self, key: str) -> bool:
        return key in self.stopped


class RayExecutor:
    kind = "ray"

    def __init__(self, workload: Workload, parallel: int = 1, *, cpus_per_candidate: int = 1,
                 gpus_per_candidate: float = 0.0, address: str | None = None):
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read by ray at start and at init
        if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
            # one machine: Ray must not swap 127.0.0.1 for the host's public address (it
            # does so to reach other nodes); read when ray is imported
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray

        self.ray, self.parallel, self.threads = ray, parallel, cpus_per_candidate
        self.owned = address is None and not ray.is_initialized()
        if self.owned:
            ray.init(num_cpus=max(os.cpu_count() or 1, cpus_per_candidate),
                     _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, logging_level="warning")
        elif not ray.is_initialized():
            _token_auth_as_ray_start_does()
            ray.init(address=address, log_to_driver=False, logging_level="warning")
        if not ray.cluster_resources().get("GPU"):
            gpus_per_candidate = 0.0  # a CPU cluster: a GPU request would never be met
        self.options = {"num_cpus": cpus_per_candidate, "num_gpus": gpus_per_candidate,
                        "max_retries": 0}  # retried here, so the ledger can say so
        self.task = ray.remote(_train_on_node)
        self.sweep = ray.remote(num_cpus=0)(_remove_containers) if (
            workload.backend == "docker") else None  # bubblewrap dies with its worker
        self.board = ray.remote(num_cpus=0)(_Board).remote()
        self.workload = ray.put(workload)  # once per run
        self.live: dict[int, Handle] = {}
        self.stopping: dict = {}  # cancelled tasks not yet ended: ref → when Ray kills it
        self.next_look = 0.0

    @staticmethod
    def _tag(h: Handle) -> str:
        return f"{h.job.key}/{h.tries}"

    def _launch(self, h: Handle) -> None:
        h.ref = self.task.options(name=f"candidate-{h.job.key}", **self.options).remote(
            self.workload, h.job, self.threads, self.board, self._tag(h))

    def submit(self, job: Job) -> Handle:
        h = Handle(job, where="ray (waiting for a node)")
        self._launch(h)
        self.live[id(h)] = h
        return h

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        by_ref = {h.ref: h for h in handles}
        ready, _ = self.ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        self._reap(block=False)
        self._look()
        done = []
        for ref in ready:
            h = by_ref[ref]
            try:
                h.outcome, h.where = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:  # the worker, its node or the sandbox
                why = describe(e)
                if h.tries < TRIES:
                    h.tries, h.retried, h.where = h.tries + 1, why, "ray (retrying)"
                    self._launch(h)
                    continue
                h.outcome = infrastructure(h.job, h.tries, why, time.time() - h.started)
            done.append(h)
        return done

    def _look(self) -> None:
        """Where the running tasks are, from the board (every few seconds)."""
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + 2.0
        try:
            where = self.ray.get(self.board.snapshot.remote(), timeout=5)
        except self.ray.exceptions.RayError:
            return
        for h in self.live.values():
            h.where = where.get(self._tag(h), h.where)

    def result(self, handle: Handle) -> Done:
        self.live.pop(id(handle), None)
        return Done(handle.job, handle.outcome, handle.where, handle.tries, handle.retried)

    def cancel(self, handle: Handle) -> None:
        """Tell the task to stop; `wait` and `close` see that it did (or kill it)."""
        self.live.pop(id(handle), None)
        self.board.cancel.remote(self._tag(handle))
        self.stopping[handle.ref] = time.monotonic() + CANCEL_GRACE_S

    def _reap(self, block: bool) -> None:
        """Forget the cancelled tasks that ended and kill those past their grace; with
        `block`, until none is left."""
        while self.stopping:
            refs = list(self.stopping)
            wait = max(0.0, min(self.stopping.values()) - time.monotonic()) if block else 0.0
            ended, _ = self.ray.wait(refs, num_returns=len(refs), timeout=wait)
            for ref in ended:
                del self.stopping[ref]
            late = [ref for ref, at in self.stopping.items() if at <= time.monotonic()]
            if late:
                self._kill(late)
            if not block:
                return

    def _kill(self, refs: list) -> None:
        """Kill these tasks, then remove their containers on every node (a killed worker
        never removes its own)."""
        for ref in refs:
            self.ray.cancel(ref, force=True)
            del self.stopping[ref]
        self.ray.wait(refs, num_returns=len(refs), timeout=60)  # their workers are gone
        if self.sweep is None:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ids = [ref.task_id().hex() for ref in refs]
        sweeps = [self.sweep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote(ids) for node in self.ray.nodes()
            if node["Alive"]]
        try:
            self.ray.get(sweeps, timeout=120)
        except self.ray.exceptions.RayError:  # a node gone meanwhile: its containers stop
            pass                              # at their own wall clock

    def close(self) -> None:
        for h in list(self.live.values()):
            self.cancel(h)
        self._reap(block=True)
        if self.owned:
            self.ray.shutdown()
