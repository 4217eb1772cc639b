"""Shape-check time per sandbox backend as a ratio to a bare `python -c "import torch"`.

    .venv/bin/python benchmarks/bench_sandbox.py [--repeats 5] [--template T4]

The peer is the floor of any fresh-process check: importing torch in a new
interpreter, measured in the same run. A check adds the static policy, process or
container start-up, building the model and a forward and backward pass. For docker a
second peer, the same bare import in the sandbox image as the sandbox's user, separates
what the container costs from what our check costs inside it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from descartes_core.contract import template_sources
from sandbox import runner


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--template", default="T4")
    a = ap.parse_args()
    source = template_sources()[a.template]
    peer = timed(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True),
                 a.repeats)
    print(f"peer: python -c 'import torch', median of {a.repeats}: {peer:.2f} s")
    backends = ["process"]
    try:
        runner.docker_client(log=lambda m: print(m, file=sys.stderr))
        backends.append("docker")
    except runner.SandboxError as e:
        print(f"docker skipped: {e}")
    for backend in backends:
        def once(backend=backend):
            out = runner.check(source, backend=backend)
            assert out.ok, out.error
        once()  # warm page cache (and the image for docker)
        t = timed(once, a.repeats)
        print(f"{backend:<8} check of {a.template}: {t:.2f} s = {t / peer:.2f}× import torch")
        if backend == "docker":
            inside = timed(lambda: _bare_import_in_the_image(), a.repeats)
            print(f"         bare import torch in the image as user nobody: {inside:.2f} s; "
                  f"the check = {t / inside:.2f}× that")


def _bare_import_in_the_image() -> None:
    import tempfile
    from pathlib import Path

    from sandbox import docker_backend
    from sandbox.process import python_path, site_packages

    c = runner.docker_client()
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job", Path(tmp) / "out"
        job.mkdir()
        out.mkdir()
        box = c.containers.create(
            docker_backend.image_tag(), ["python3", "-s", "-c", "import torch"],
            network_mode="none", user="65534:65534", volumes=docker_backend._mounts(job, out),
            environment={"PYTHONPATH": python_path(len(site_packages())), "HOME": "/tmp"})
        try:
            box.start()
            assert box.wait()["StatusCode"] == 0
        finally:
            box.remove(force=True)


if __name__ == "__main__":
    main()
