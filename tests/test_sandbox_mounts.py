"""What a job can see of the project: only the files that build, train and roll out a
model. With arbitrary code in the job (the policy fallen), the simulator, the trial design
and dataset generation must not be there to re-simulate the hidden variables from."""

from __future__ import annotations

import ast

from sandbox import runner
from sandbox.process import PROJECT_ROOT, WORKER_FILES

SIMULATOR = ("descartes_core/circuit.py", "descartes_core/circuit_kernel.py",
             "descartes_core/trials.py", "descartes_core/dataset.py",
             "descartes_core/channels.py", "descartes_core/variables.py",
             "descartes_core/rhythm.py")


def _module(rel: str) -> str:
    return rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _project_imports(rel: str) -> set[str]:
    """The project modules a file imports anywhere in its code (`from pkg import mod`
    counts as `pkg.mod` when that is a module of the checkout)."""
    out = set()
    for node in ast.walk(ast.parse((PROJECT_ROOT / rel).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if (PROJECT_ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists()}
    return {n for n in out if n.split(".")[0] in ("descartes_core", "sandbox")}


def test_the_mounted_files_import_only_each_other():
    mounted = {_module(f) for f in WORKER_FILES}
    for rel in WORKER_FILES:
        assert _project_imports(rel) <= mounted, rel
    assert not set(SIMULATOR) & set(WORKER_FILES)


FIND = '''
import os
import importlib.util
seen = sorted(os.path.relpath(os.path.join(d, f), "/opt/descartes")
              for d, _, files in os.walk("/opt/descartes") for f in files)
reach = [m for m in ("descartes_core.circuit", "descartes_core.trials",
                     "descartes_core.dataset", "descartes_core.circuit_kernel")
         if importlib.util.find_spec(m) is not None]
raise RuntimeError("SEEN " + ",".join(seen) + " REACH " + ",".join(reach) + " END")
'''


def test_a_job_finds_no_simulator_file(backend):
    """Arbitrary code in a real job, the policy bypassed: the project files it can find
    are exactly the mounted ones, and no simulator module imports."""
    out = runner.run_job("check", FIND, {"latent_dim": 4}, backend=backend)
    text = (out.error or {}).get("message", "") + out.log_tail
    assert "SEEN " in text, text
    seen, reach = text.split("SEEN ", 1)[1].split(" END", 1)[0].split(" REACH ")
    assert {s for s in seen.split(",") if "__pycache__" not in s} == set(WORKER_FILES)
    assert reach == ""


def test_the_registry_image_copies_only_the_mounted_files():
    """sandbox/Dockerfile (hosts with a registry) bakes the code into the image: the same
    files, never the simulator."""
    text = (PROJECT_ROOT / "sandbox" / "Dockerfile").read_text().replace("\\\n", " ")
    copied = {f for line in text.splitlines() if line.startswith("COPY ")
              for f in line.split()[1:-1]}
    assert copied == set(WORKER_FILES)
