"""The docker backend: the worker in a hardened, throw-away container.

No image can be pulled on a machine without a registry, so the image is built
locally: a minimal Debian root filesystem (debootstrap, with python3 of the
host's minor version) imported into the engine under a content-hashed tag. What a
container sees of the host: its site-packages at ``/opt/site`` and the few code
files that train a model (``sandbox.process.WORKER_FILES``) at ``/opt/descartes``
(read-only), the job folder at ``/job`` (read-only) and the output folder at ``/out``
— never the project root, a data folder, a cache or a run folder. Each container: no
network, read-only root with a small tmpfs, CPU / memory / pids / file-size limits, all
capabilities dropped, no-new-privileges, user nobody, no host environment, a wall-clock
kill from the host, removed afterwards.

A container never depends on its owner to end: its command runs under ``timeout``, a wall
clock a little past the host's, so one whose owner was killed (a Ray worker cancelled by
force, a driver killed with -9) stops by itself; `remove_stale` and `remove_job` remove
what is left, by label.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from sandbox.process import (
    CODE,
    JOB,
    NOFILE,
    OUT,
    PROJECT_ROOT,
    SITE,
    WORKER_FILES,
    Limits,
    has_gpu,
    pid_alive,
    python_path,
    site_packages,
    thread_environment,
)
from sandbox.watch import descendants

LABEL = "descartes-sandbox"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"


def client():
    """A client whose engine answers, or None."""
    try:
        c = docker.from_env(timeout=10)
        c.ping()
        return c
    except DockerException:
        return None


def image_tag() -> str:
    recipe = f"{SUITE}|{MIRROR}|python3|{sys.version_info.major}.{sys.version_info.minor}|1"
    return f"{LABEL}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def has_image(c) -> bool:
    try:
        c.images.get(image_tag())
        return True
    except ImageNotFound:
        return False


def debootstrap() -> str | None:
    """debootstrap's path (it lives in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("debootstrap")
    return found or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)


class BuildError(RuntimeError):
    """The sandbox image could not be built; the message is one line naming the cause."""


def build_image(c, log=print) -> str:
    """debootstrap a minimal Debian with python3 and import it; returns the tag."""
    tool = debootstrap()
    if tool is None:
        raise BuildError("building the sandbox image needs debootstrap (apt-get install "
                         "debootstrap), or use --sandbox process")
    try:
        return _build(c, tool, log)
    except subprocess.CalledProcessError as e:
        last = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise BuildError(f"cannot build the sandbox image: {Path(e.cmd[0]).name} failed "
                         f"({last[0][:200]}); try --sandbox process") from None
    except Exception as e:  # the engine's and the disk's errors: one line each
        first = (str(e).splitlines() or [""])[0][:200]
        raise BuildError(f"cannot build the sandbox image: {type(e).__name__}: {first}; "
                         "try --sandbox process") from None


def _build(c, tool: str, log) -> str:
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="descartes-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} with python3 (about a minute)")
        subprocess.run([tool, "--variant=minbase", "--include=python3", SUITE,
                        str(root), MIRROR], check=True, capture_output=True)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True,
                       capture_output=True)
        repo, tag = image_tag().split(":")
        log(f"importing {repo}:{tag}")
        c.api.import_image_from_file(str(tar), repository=repo, tag=tag)
    return image_tag()


OWNER = f"{LABEL}.owner"
JOB_KEY = f"{LABEL}.job"
"""The label naming the job a container runs for (`job_label`): how a job's containers are
found from elsewhere once the process that owns them has been killed."""
WALL_MARGIN_S = 30.0
"""How long the container's own wall clock runs past the host's, which kills first (and
says "timeout") whenever the host is alive."""
_job: ContextVar[str] = ContextVar(JOB_KEY, default="")


@contextmanager
def job_label(value: str) -> Iterator[None]:
    """The containers this thread runs meanwhile carry `value` under JOB_KEY."""
    token = _job.set(value)
    try:
        yield
    finally:
        _job.reset(token)


def _remove(container) -> None:
    """Remove it, unless it is gone or being removed already (by its owner, at the same time)."""
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as e:
        if e.status_code != 409:  # 409: its removal is already under way
            raise


def remove_stale(c) -> None:
    """Containers left by a killed orchestrator, found by label; never a live one's."""
    for old in c.containers.list(all=True, filters={"label": LABEL}):
        if not pid_alive(old.labels.get(OWNER, "")):
            _remove(old)


def remove_job(c, value: str) -> None:
    """Every container, running or stopped, of the job labelled `value` (`job_label`)."""
    for old in c.containers.list(all=True, filters={"label": f"{JOB_KEY}={value}"}):
        _remove(old)


def _mounts(job: Path, out: Path) -> dict:
    sites = site_packages()
    mounts = {site: {"bind": SITE if i == 0 else f"{SITE}{i}", "mode": "ro"}
              for i, site in enumerate(sites)}
    mounts.update({str(PROJECT_ROOT / rel): {"bind": f"{CODE}/{rel}", "mode": "ro"}
                   for rel in WORKER_FILES})
    mounts.update({str(job): {"bind": JOB, "mode": "ro"}, str(out): {"bind": OUT, "mode": "rw"}})
    return mounts


def _gpu_requests(lim: Limits) -> list | None:
    """All GPUs (gpus None), the share named by CUDA_VISIBLE_DEVICES, or none ("")."""
    if not has_gpu() or lim.gpus == "":
        return None
    if lim.gpus is None:
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=lim.gpus.split(","), capabilities=[["gpu"]])]


def run(c, job: Path, out: Path, lim: Limits,
        tick: Callable[[], None] | None = None) -> tuple[int, str, str, bool]:
    """Same contract as :func:`sandbox.process.run`."""
    out.chmod(0o777)  # the container writes as nobody
    job.chmod(0o755)
    mb = 1 << 20
    container = c.containers.create(
        image_tag(), ["timeout", "-s", "KILL", str(math.ceil(lim.timeout_s + WALL_MARGIN_S)),
                      "python3", "-s", "-m", "sandbox.worker", JOB, OUT],
        network_mode="none", read_only=True,
        tmpfs={"/tmp": "rw,size=64m,noexec,nosuid"}, working_dir=OUT,
        # the container's cgroup: they bind every process of the job together
        mem_limit=f"{lim.memory_mb}m", memswap_limit=f"{lim.memory_mb}m",
        pids_limit=lim.pids, nano_cpus=max(2, lim.threads) * 1_000_000_000,
        cap_drop=["ALL"], security_opt=["no-new-privileges:true"], user="65534:65534",
        init=True, labels={LABEL: "1", OWNER: str(os.getpid()), JOB_KEY: _job.get()},
        # a flood of stdout must not fill the host's disk through the engine's log file
        log_config=docker.types.LogConfig(type="json-file",
                                          config={"max-size": "1m", "max-file": "1"}),
        environment={"PYTHONPATH": python_path(len(site_packages())), "HOME": "/tmp",
                     "PYTHONDONTWRITEBYTECODE": "1",
                     # the GPU share is the container's devices, numbered from 0 inside
                     **{k: v for k, v in thread_environment(lim).items()
                        if k != "CUDA_VISIBLE_DEVICES"}},
        volumes=_mounts(job, out),
        ulimits=[docker.types.Ulimit(name="fsize", soft=lim.file_mb * mb, hard=lim.file_mb * mb),
                 docker.types.Ulimit(name="core", soft=0, hard=0),
                 docker.types.Ulimit(name="nofile", soft=NOFILE, hard=NOFILE)],
        device_requests=_gpu_requests(lim),
    )
    timed_out = False
    try:
        container.start()
        deadline = time.monotonic() + lim.timeout_s
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                break
            if time.monotonic() > deadline:
                timed_out = True
                container.kill()
                break
            if tick is not None:
                # the engine's own listing (docker top) stalls under a fork bomb: /proc does not
                init = int(container.attrs.get("State", {}).get("Pid") or 0)
                tick(functools.partial(descendants, init) if init > 0 else None)
            time.sleep(0.1)
        state = c.api.inspect_container(container.id)["State"]
        rc = 137 if state.get("OOMKilled") else int(state.get("ExitCode", -1))
        tail = container.logs(stdout=True, stderr=True, tail=200)[-4000:].decode(
            errors="replace")
    finally:
        _remove(container)
    return rc, tail, "docker", timed_out
