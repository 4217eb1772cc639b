"""The sandbox's narrow seam: check or evaluate a source, get back validated JSON and arrays.

Nothing from the worker is trusted: the response must match its schema, arrays
their expected shapes and dtypes, be finite and under the size caps; anything
else is a failed candidate with a class and a message, never an exception.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox import policy, process
from sandbox.process import Limits
from sandbox.worker import PROGRESS

MAX_RESPONSE_BYTES = 1 << 20
MAX_LATENT_DIM = 1024
CHECK_LIMITS = Limits(timeout_s=120.0)


def evaluate_limits(time_budget_h: float, device: str = "auto") -> Limits:
    """Limits of a training job. Training stops itself at its budget; the rollouts of every
    trial (trained and untrained) and the start-up come on top. Memory is sized for
    full datasets (the default one needs about 6 GiB of address space) but stays well
    inside the host's RAM."""
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    cuda = device != "cpu" and process.has_gpu()
    return Limits(timeout_s=time_budget_h * 3600.0 * 1.5 + 900.0,
                  memory_mb=int(min(16384, 0.6 * ram_mb)), file_mb=4096, cuda=cuda)


@dataclass
class Outcome:
    """What a sandboxed job produced, validated on the host."""

    ok: bool
    task: str
    isolation: str
    error: dict | None = None
    """{"kind": syntax | policy | import | shape | nan | oom | timeout | runtime | …,
    "message": one or more lines the architect can act on}."""
    check: dict | None = None
    record: dict | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    log_tail: str = ""


def _failed(task, isolation, kind, message, log_tail="") -> Outcome:
    return Outcome(False, task, isolation, {"kind": kind, "message": message}, log_tail=log_tail)


def _read_response(out: Path, token: str) -> dict | None:
    path = out / "response.json"
    if not path.exists() or path.stat().st_size > MAX_RESPONSE_BYTES:
        return None
    try:
        response = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        return None
    return response if response.get("token") == token else None


def _arrays(out: Path, n: int, t: int, latent_dim: int) -> dict[str, np.ndarray] | str:
    """The evaluate arrays, or the reason they are unusable."""
    try:
        with np.load(out / "arrays.npz", allow_pickle=False) as z:
            got = {k: z[k] for k in ("predictions", "latents", "null_latents")}
    except Exception as e:  # missing, truncated, forged: all the same to us
        return f"unreadable arrays ({type(e).__name__})"
    want = {"predictions": (n, t, 20), "latents": (n, t, latent_dim),
            "null_latents": (n, t, latent_dim)}
    for k, shape in want.items():
        a = got[k]
        if a.dtype != np.float32 or a.shape != shape:
            return f"{k} is {a.dtype} {a.shape}, expected float32 {shape}"
        if not np.isfinite(a).all():
            return f"{k} holds NaN or infinite values"
    return got


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
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            raise SandboxError(f"cannot build the sandbox image: {e}") from None
    _docker = c
    return c


def resolve_backend(name: str) -> str:
    """'auto' is docker when an engine answers and the image exists or can be built."""
    if name != "auto":
        return name
    from sandbox import docker_backend

    c = docker_backend.client()
    if c is not None and (docker_backend.has_image(c) or docker_backend.debootstrap()):
        return "docker"
    return "process"


class SandboxError(Exception):
    """The sandbox itself cannot run (not a candidate's fault)."""


PROGRESS_FIELDS = {"epoch": int, "total": int, "train_loss": float, "val_loss": float}


class _Progress:
    """Reads the worker's epoch lines as they come; untrusted, so only numbers pass."""

    def __init__(self, path: Path, report: Callable[[dict], None]):
        self.path, self.report, self.offset = path, report, 0

    def __call__(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(1 << 16)
        except OSError:
            return
        lines = chunk.split(b"\n")[:-1]  # a line still being written waits for next time
        self.offset += sum(len(line) + 1 for line in lines)
        if not lines:
            return
        try:  # only the newest epoch matters to a progress bar
            d = json.loads(lines[-1])
            self.report({k: t(d[k]) for k, t in PROGRESS_FIELDS.items()})
        except (ValueError, TypeError, KeyError):
            pass


def run_job(task: str, source: str, config: dict, arrays: dict | None = None,
            lim: Limits = CHECK_LIMITS, level: str | None = None,
            backend: str = "process", progress: Callable[[dict], None] | None = None
            ) -> Outcome:
    """One worker job in the sandbox, without the static policy (the sandbox's own tests).

    `progress` receives {epoch, total, train_loss, val_loss} while a model trains.
    """
    with tempfile.TemporaryDirectory(prefix="descartes-job-") as tmp:
        job, out = Path(tmp) / "job", Path(tmp) / "out"
        job.mkdir()
        out.mkdir()
        (job / "request.json").write_text(json.dumps(
            {"task": task, "source": source, "config": config}))
        if arrays:
            np.savez(job / "arrays.npz", **arrays)
        token = secrets.token_hex(16)
        tick = _Progress(out / PROGRESS, progress) if progress else None
        if backend == "docker":
            from sandbox import docker_backend

            rc, tail, isolation, timed_out = docker_backend.run(docker_client(), job, out, lim,
                                                                token, tick)
        else:
            rc, tail, isolation, timed_out = process.run(job, out, lim, token, level, tick)
        if tick is not None:
            tick()  # the epochs written after the last poll
        if timed_out:
            return _failed(task, isolation, "timeout",
                           f"killed after the {lim.timeout_s:.0f} s wall-clock limit", tail)
        response = _read_response(out, token) if rc == 0 else None
        if response is None:
            kind = "oom" if rc in (-9, 137) or "MemoryError" in tail else "runtime"
            return _failed(task, isolation, kind, f"the worker exited with code {rc} and no "
                           "valid signed response (crashed, exited early or forged one)", tail)
        if not response["ok"] and (task == "check" or "record" not in response):
            error = response.get("error") or {}
            return _failed(task, isolation, str(error.get("kind", "runtime")),
                           str(error.get("message", "")), tail)
        result = Outcome(response["ok"], task, isolation, log_tail=tail)
        if task == "check":
            result.check = response.get("check") if isinstance(response.get("check"), dict) \
                else None
            if result.check is None:
                return _failed(task, isolation, "runtime", "malformed check response", tail)
            return result
        record = response.get("record")
        result.record = record if isinstance(record, dict) else None
        if result.record is None:
            return _failed(task, isolation, "runtime", "malformed evaluate response", tail)
        if result.record.get("failure"):
            result.error = {"kind": result.record["failure"],
                            "message": result.record.get("failure_message") or ""}
        n, t, _ = arrays["inputs"].shape
        if response.get("arrays"):
            got = _arrays(out, n, t, int(config.get("latent_dim", 64)))
            if isinstance(got, str):
                return _failed(task, isolation, "runtime", got, tail)
            result.arrays = got
        return result


def check(source: str, *, latent_dim: int = 64, lim: Limits = CHECK_LIMITS,
          level: str | None = None, allowed_imports=policy.DEFAULT_IMPORTS,
          backend: str = "process") -> Outcome:
    """The static policy, then the shape check in the sandbox."""
    verdict = policy.check(source, allowed_imports)
    if not verdict.accepted:
        kind = "syntax" if verdict.violations[0].rule == "syntax" else "policy"
        return _failed("check", "static", kind, "\n".join(str(v) for v in verdict.violations))
    if latent_dim > MAX_LATENT_DIM:
        return _failed("check", "static", "shape", f"latent_dim over {MAX_LATENT_DIM}")
    return run_job("check", source, {"latent_dim": latent_dim}, None, lim, level, backend)


def evaluate(source: str, inputs: np.ndarray, targets: np.ndarray, split: dict, *,
             latent_dim: int = 64, train: dict | None = None, teacher: np.ndarray | None = None,
             lim: Limits | None = None, level: str | None = None,
             backend: str = "process", progress: Callable[[dict], None] | None = None
             ) -> Outcome:
    """Train and roll out in the sandbox. `targets` must already hide the test trials."""
    if "test" in split:
        raise ValueError("the sandbox never receives the test split")
    arrays = {"inputs": np.asarray(inputs, np.float32), "targets": np.asarray(targets, np.float32)}
    if teacher is not None:
        arrays["teacher"] = np.asarray(teacher, np.float32)
    train = train or {}
    config = {"latent_dim": latent_dim, "split": split, "train": train}
    if lim is None:
        from descartes_core.training import TrainConfig

        lim = evaluate_limits(float(train.get("time_budget_h", TrainConfig.time_budget_h)),
                              str(train.get("device", TrainConfig.device)))
    return run_job("evaluate", source, config, arrays, lim, level, backend, progress)

