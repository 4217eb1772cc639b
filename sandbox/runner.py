"""The sandbox's narrow seam: check or evaluate a source, get back validated JSON and arrays.

Nothing from the worker is trusted: the response must match its schema, arrays
their expected shapes and dtypes, be finite and under the size caps; anything
else is a failed candidate with a class and a message, never an exception.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sandbox import cgroup, policy, process, protocol, weights
from sandbox.blocks import needed
from sandbox.process import Limits
from sandbox.watch import OutputOverflow, Watch

MAX_LATENT_DIM = 1024
MAX_PARAMS = 5_000_000
N_OUTPUTS = 20
NULL_SEEDS = 3
"""Untrained initialisations a job rolls out (descartes_core.training.TrainConfig.null_seeds)."""
CHECK_LIMITS = Limits(timeout_s=45.0, memory_mb=4096)
"""A shape check imports torch (1–2 s), builds the model and runs a few short batches:
a hung candidate is cut off in well under a minute. Its memory is its own (the driver runs
one check at a time), not a share of the training slots': torch's import alone maps about
3 GiB of address space."""
VERIFY_BUDGET_S = 120.0
"""All the verification of one learning step, every job of it together: blocks that hang
cost the driver this at most (a hung block is refused at its job's limit, CHECK_LIMITS)."""
MIN_VERIFY_JOB_S = 10.0
"""No verification job starts with less of the budget left: it would die importing torch."""
BACKENDS = ("docker", "process", "degraded")
"""docker: a hardened container. process: bubblewrap, full isolation. degraded: the
process backend with whatever the host allows (chosen with --allow-degraded only)."""


def evaluate_limits(time_budget_h: float, device: str = "auto", threads: int = 1,
                    gpus: str | None = None, slots: int = 1) -> Limits:
    """Limits of a training job, one of `slots` jobs in flight on this machine. Training
    stops itself at its budget; the rollouts of every trial (trained and untrained) and the
    start-up come on top. The jobs share 60 % of the host's RAM, each its part of it and
    never over 16 GiB (the default dataset needs about 6 GiB of address space): the cap
    binds the job's whole process tree on both backends."""
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    cuda = device != "cpu" and process.has_gpu() and gpus != ""
    return Limits(timeout_s=time_budget_h * 3600.0 * 1.5 + 900.0,
                  memory_mb=int(min(16384, 0.6 * ram_mb / max(1, slots))), file_mb=4096,
                  cuda=cuda, threads=threads, gpus=gpus)


@dataclass
class Outcome:
    """What a sandboxed job produced, validated on the host."""

    ok: bool
    task: str
    isolation: str
    error: dict | None = None
    """{"kind": syntax | policy | import | shape | nan | oom | timeout | runtime | protocol
    | …, "message": one or more lines the architect can act on}."""
    check: dict | None = None
    record: dict | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    log_tail: str = ""
    wall_s: float = 0.0
    """The job's wall-clock time on the host's clock: what budgets count."""
    weights: weights.Weights | None = None
    """An evaluation's trained weights, counted on the host (sandbox.weights)."""


def _failed(task, isolation, kind, message, log_tail="", wall_s=0.0) -> Outcome:
    return Outcome(False, task, isolation, {"kind": kind, "message": message},
                   log_tail=log_tail, wall_s=wall_s)


_docker = None


def docker_client(log=print):
    """An engine that answers, with the sandbox image built and stale containers removed
    (once per process)."""
    global _docker
    from sandbox import docker_backend

    if _docker is not None:
        return _docker
    c = docker_backend.client()
    if c is None:
        raise SandboxError("no docker engine answers (start it, or use --sandbox process)")
    docker_backend.remove_stale(c)
    if not docker_backend.has_image(c):
        try:
            docker_backend.build_image(c, log)
        except docker_backend.BuildError as e:
            raise SandboxError(str(e)) from None
    _docker = c
    return c


def remove_stale_containers(backend: str) -> None:
    """Containers whose owner died (a killed driver's, a killed Ray worker's) on this host."""
    if backend != "docker":
        return
    from sandbox import docker_backend

    c = docker_backend.client()
    if c is not None:
        docker_backend.remove_stale(c)


DEGRADED_FIX = ("install bubblewrap (apt-get install bubblewrap) and run as root where "
                "cgroups can cap a job, or start a docker engine, or pass --allow-degraded "
                "to run candidates with less isolation")


def resolve_backend(name: str, allow_degraded: bool = False, trains: bool = True) -> str:
    """docker, process (bubblewrap) or degraded, for --sandbox auto | docker | process.

    auto is docker when an engine answers and the image exists or can be built, else
    bubblewrap. Less than full isolation is never chosen silently: SandboxError naming the
    fix, unless `allow_degraded`. A backend that `trains` must also bind each job's memory
    and tasks as a whole (sandbox.cgroup); the shape checks alone (`check`, of a file the
    user holds, each under 45 s) may run on bubblewrap with per-process limits, and say so
    in their isolation."""
    if name == "docker":
        return name
    if name == "auto":
        from sandbox import docker_backend

        c = docker_backend.client()
        if c is not None and (docker_backend.has_image(c) or docker_backend.debootstrap()):
            return "docker"
    bwrap = process.isolation_level() == "bwrap"
    if bwrap and (not trains or cgroup.kind() is not None):
        return "process"
    if allow_degraded:
        return "degraded"
    if bwrap:
        raise SandboxError(f"bubblewrap cannot cap a job's memory and tasks as a whole here "
                           f"(no usable cgroup: {cgroup.why_not()}): {DEGRADED_FIX}")
    raise SandboxError(f"no full isolation here (no docker engine, bubblewrap unusable): "
                       f"{DEGRADED_FIX}")


class SandboxError(Exception):
    """The sandbox itself cannot run (not a candidate's fault)."""


def _run_worker(backend: str, job: Path, out: Path, lim: Limits, level: str | None,
                tick: Callable[..., None]) -> tuple[int, str, str, bool]:
    if backend == "docker":
        from sandbox import docker_backend

        return docker_backend.run(docker_client(), job, out, lim, tick)
    if backend not in BACKENDS:
        raise SandboxError(f"unknown sandbox backend {backend!r}: expected "
                           f"{', '.join(BACKENDS)}")
    if level is None:
        level = process.isolation_level()
        if backend == "process" and level != "bwrap":
            raise SandboxError(f"bubblewrap does not work here: {DEGRADED_FIX}")
    return process.run(job, out, lim, level, tick)


def run_job(task: str, source: str, config: dict, arrays: dict | None = None,
            lim: Limits = CHECK_LIMITS, level: str | None = None,
            backend: str = "process", progress: Callable[[dict], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> Outcome:
    """One worker job in the sandbox, without the static policy (the sandbox's own tests).

    `progress` receives {epoch, total, train_loss, val_loss} while a model trains; once
    `cancelled()` is true the worker is killed and Cancelled raised. The job
    folder holds the request and `arrays` and nothing else; the worker sees no other file
    of the host's but the interpreter and the code (sandbox.process, sandbox.docker_backend).
    """
    latent_dim = int(config.get("latent_dim", 64))
    tmp = Path(tempfile.mkdtemp(prefix="descartes-job-"))
    try:
        job, out = tmp / "job", tmp / "out"
        job.mkdir()
        out.mkdir()
        protocol.write_request(job, task, source, {"max_params": MAX_PARAMS, **config})
        if arrays:
            np.savez(job / protocol.ARRAYS, **arrays)
        watch = Watch(out, lim, progress, cancelled)
        start = time.monotonic()
        overflow = None
        try:
            rc, tail, isolation, timed_out = _run_worker(backend, job, out, lim, level, watch)
        except OutputOverflow as e:  # the backend killed the worker on its way out
            rc, tail, isolation, timed_out, overflow = -9, "", backend, False, str(e)
        wall = time.monotonic() - start

        def failed(kind, message):
            return _failed(task, isolation, kind, message, tail, wall)

        if overflow:
            return failed("runtime", f"stopped: {overflow}")
        if progress is not None:
            watch._progress()  # the epochs written after the last poll
        if timed_out:
            return failed("timeout", f"killed after the {lim.timeout_s:.0f} s wall-clock limit")
        try:
            response = protocol.read_response(out, task, latent_dim=latent_dim,
                                              max_params=MAX_PARAMS)
            if response is None or rc != 0:
                kind = "oom" if rc in (-9, 137) or "MemoryError" in tail else "runtime"
                if kind == "oom":
                    return failed(kind, f"killed at the job's memory cap ({lim.memory_mb} MiB, "
                                        "its whole process tree counted)")
                return failed(kind, f"the worker exited with code {rc} and "
                                    f"{'no' if response is None else 'a'} response")
            if response.record is not None and response.record["wall_s"] > wall + 5.0:
                raise protocol.ProtocolError(f"the worker claims {response.record['wall_s']:.0f}"
                                             f" s of training in a job of {wall:.0f} s")
            got = {}
            if response.arrays:
                n, t, _ = arrays["inputs"].shape
                null_seeds = int(config.get("train", {}).get("null_seeds", NULL_SEEDS))
                got = protocol.read_arrays(out, n, t, N_OUTPUTS, latent_dim, null_seeds)
            trained = weights.read(out, MAX_PARAMS) if task == "evaluate" else None
        except protocol.ProtocolError as e:
            return failed("protocol", f"the sandbox's response breaks the protocol: {e}")
    finally:  # rm copes with any depth of folders a candidate left; shutil.rmtree recurses
        subprocess.run(["rm", "-rf", "--", str(tmp)], check=False)
    error = response.error and {"kind": response.error.kind, "message": response.error.message}
    record = response.record
    if record is not None:
        record = {**record, "worker_wall_s": record["wall_s"], "wall_s": round(wall, 3)}
        if record["failure"]:
            error = {"kind": record["failure"], "message": record["failure_message"] or ""}
    return Outcome(response.ok, task, isolation, error, response.check, record, got, tail, wall,
                   trained)


def check(source: str, *, latent_dim: int = 64, lim: Limits = CHECK_LIMITS,
          level: str | None = None, backend: str = "process",
          library: dict[str, str] | None = None) -> Outcome:
    """The static policy (which lets the source import the blocks of `library`, name →
    file), then the shape check in the sandbox, which also observes the contracts of the
    source's helpers (sandbox.blocks). The job carries only the blocks the source imports
    (sandbox.blocks.needed): the others are untrusted files it has no use for."""
    verdict = policy.check(source, library=frozenset(library or {}))
    if not verdict.accepted:
        kind = "syntax" if verdict.violations[0].rule == "syntax" else "policy"
        return _failed("check", "static", kind, "\n".join(str(v) for v in verdict.violations))
    if not 1 <= latent_dim <= MAX_LATENT_DIM:
        return _failed("check", "static", "shape", f"latent_dim outside 1 … {MAX_LATENT_DIM}")
    return run_job("check", source, {"latent_dim": latent_dim,
                                     "library": needed(source, library or {})}, None,
                   lim, level, backend)


def verify_blocks(blocks: list[tuple[str, str, dict]], *, library: dict[str, str] | None = None,
                  lim: Limits = CHECK_LIMITS, budget_s: float = VERIFY_BUDGET_S,
                  level: str | None = None, backend: str = "process"
                  ) -> dict[str, tuple[bool, str]]:
    """Each (file, name, contract) of `blocks` built from its file alone and run on its
    contract (sandbox.blocks.verify), as few sandboxed jobs as can be; `library` holds the
    blocks they import. name → (verified, why not). The verdict is a quality gate: whatever
    a block does, it does inside the sandbox.

    The worker marks each block as it starts it, so a job that dies (at its time limit, out
    of memory, exited) is the fault of the block it was on: that block is refused with the
    job's error, never tried again, and the others go on in the next job. All the jobs
    share one deadline, `budget_s` from now: each gets the check limit or what is left,
    whichever is less, and none starts with less than MIN_VERIFY_JOB_S left. A block the
    deadline leaves unverified, or whose job died before any block began, has no verdict:
    it is not refused, it may be tried again later."""
    deadline = time.monotonic() + budget_s
    verdicts: dict[str, tuple[bool, str]] = {}
    todo = list(blocks)
    began: list[int] = []  # the epochs of the job's progress lines: the blocks it began
    solo: set[str] = set()  # failed beside others: judged only by a job of their own
    while todo and (left := deadline - time.monotonic()) >= MIN_VERIFY_JOB_S:
        batch = [todo[0]] if todo[0][1] in solo else \
            [b for b in todo if b[1] not in solo][:protocol.MAX_BLOCKS]
        began.clear()
        config = {"blocks": [{"code": c, "name": n, "contract": k} for c, n, k in batch],
                  "library": library or {}}
        out = run_job("verify", "", config, None,
                      replace(lim, timeout_s=min(lim.timeout_s, left)), level, backend,
                      progress=lambda d: began.append(d["epoch"]))
        if out.ok:
            # Every block of a job runs in one interpreter, so one can rewrite the others'
            # verdicts: a failure seen beside other blocks is checked again alone.
            got = out.check["verdicts"]
            for _, n, _ in batch:
                if n in got and got[n]["ok"]:
                    verdicts[n] = (True, "")
                elif len(batch) > 1:
                    solo.add(n)
                else:
                    verdicts[n] = (False, f"{got[n]['kind']}: {got[n]['message']}" if n in got
                                   else "the verification gave no verdict")
            todo = sorted((b for b in todo if b[1] not in verdicts),
                          key=lambda b: b[1] not in solo)
        elif began and began[-1] < len(batch):
            culprit = batch[began[-1]]
            why = f"{out.error['kind']}: {out.error['message']}" if out.error else "no answer"
            verdicts[culprit[1]] = (False, why)
            todo.remove(culprit)
        else:
            break  # it died before any block began: no block's fault, none is judged
    return verdicts


def evaluate(source: str, inputs: np.ndarray, targets: np.ndarray, split: dict, *,
             latent_dim: int = 64, train: dict | None = None, teacher: np.ndarray | None = None,
             counts: np.ndarray | None = None, lim: Limits | None = None,
             level: str | None = None, backend: str = "process", threads: int = 1,
             gpus: str | None = None, progress: Callable[[dict], None] | None = None,
             cancelled: Callable[[], bool] | None = None,
             library: dict[str, str] | None = None) -> Outcome:
    """Train and roll out in the sandbox, on `threads` CPU threads and the GPUs `gpus`
    (CUDA_VISIBLE_DEVICES; None: all), with the library blocks the source imports.
    `targets`, `teacher` and `counts` (spike counts, for a count loss) must already hide
    every trial outside the split: only its rows travel, the rest are sent as zeros
    whatever the caller passed."""
    if {"selection", "test"} & set(split):
        raise ValueError("the sandbox never receives the selection or test split")
    seen = np.zeros(len(inputs), dtype=bool)
    seen[np.concatenate([np.asarray(v, dtype=np.intp) for v in split.values()])] = True

    def hidden(a: np.ndarray) -> np.ndarray:  # rows outside the split are never sent
        a = np.array(a, dtype=np.float32)
        a[~seen] = 0.0
        return a

    arrays = {"inputs": np.asarray(inputs, np.float32), "targets": hidden(targets)}
    if teacher is not None:
        arrays["teacher"] = hidden(teacher)
    if counts is not None:
        arrays["counts"] = hidden(counts)
    train = train or {}
    config = {"latent_dim": latent_dim, "split": split, "train": train,
              "library": library or {}}
    if lim is None:
        from descartes_core.training import TrainConfig

        lim = evaluate_limits(float(train.get("time_budget_h", TrainConfig.time_budget_h)),
                              str(train.get("device", TrainConfig.device)), threads, gpus)
    return run_job("evaluate", source, config, arrays, lim, level, backend, progress, cancelled)

