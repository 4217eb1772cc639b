"""Hostile candidates against both backends: each is rejected by the static policy or
contained by the sandbox, the host is untouched, and the next candidate runs normally.

Runtime cases bypass the policy on purpose (``runner.run_job``): the sandbox must hold
even when the policy has been evaded. With CI=true neither backend may skip: CI
installs bubblewrap and an engine runs on these machines.
"""

import json
import os
import shutil
import socket
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from descartes_core.contract import source_width, template_sources
from sandbox import policy, process, runner
from sandbox.process import Limits

IN_CI = os.environ.get("CI") == "true"  # the backend fixture is in conftest.py


FAST = Limits(timeout_s=30.0)
PROPS = ('PROPERTIES = {"family": "x", "time_handling": "custom", "gradient_strategy": '
         '"direct", "latent_structure": "unconstrained", "input_coupling": "additive", '
         '"solver": "euler"}\n')


def candidate(init_code: str) -> str:
    """A tiny valid model whose __init__ first runs `init_code`."""
    body = textwrap.indent(textwrap.dedent(init_code), " " * 8)
    return f'''import torch
import torch.nn as nn
{PROPS}

class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
{body}
        self.lin = nn.Linear(n_inputs, latent_dim)
        self.out = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        z = torch.tanh(self.lin(x))
        return self.out(z), z, z[:, -1]
'''


@pytest.fixture
def sentinel():
    """Where a breach would land: a folder of the checkout, open to anyone (/tmp, which
    both backends replace, could never show one)."""
    import uuid

    from sandbox.process import PROJECT_ROOT

    folder = PROJECT_ROOT / f".sentinel-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    folder.chmod(0o777)
    path = folder / "sentinel"
    try:
        yield path
        assert not path.exists(), "a candidate wrote on the host"
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    yield srv.getsockname()[1]
    try:
        conn, _ = srv.accept()
        conn.close()
        pytest.fail("a candidate reached the host's listening socket")
    except TimeoutError:
        pass
    finally:
        srv.close()


def run(backend, source, lim=FAST):
    return runner.run_job("check", source, {"latent_dim": 8}, None, lim, backend=backend)


def test_a_harmless_candidate_passes(backend):
    out = run(backend, candidate("pass"))
    # CI's machines bind a bubblewrap job with a cgroup; elsewhere a check may run without
    bound = {"process": ("bwrap+cgroup1", "bwrap+cgroup2"), "docker": ("docker",)}[backend]
    assert out.ok and (out.isolation in bound or (out.isolation == "bwrap" and not IN_CI)), out


@pytest.mark.parametrize("code", [
    "import os\nopen('{p}', 'w').write('x')",
    "import subprocess\nsubprocess.run(['touch', '{p}'])",
    "import os\nos.system('touch {p}')",
    "import torch\ntorch.os.system('touch {p}')",
    "import ctypes\nctypes.CDLL(None).system(b'touch {p}')",
    "import shutil\nshutil.copy('/etc/hostname', '{p}')",
])
def test_writing_on_the_host_is_contained(backend, code, sentinel):
    src = candidate(code.format(p=sentinel))
    assert not policy.check(src).accepted  # the first line says no …
    run(backend, src)  # … and the sandbox holds when bypassed (the fixture checks the sentinel)


def test_without_isolation_the_sentinel_is_hit(sentinel):
    """The same writer, run with nothing but limits, does land: the sentinel can fail."""
    src = candidate(f"open({str(sentinel)!r}, 'w').write('pwned')")
    runner.run_job("check", src, {"latent_dim": 8}, None, FAST, level="limits-only",
                   backend="degraded")
    assert sentinel.read_text() == "pwned"
    sentinel.unlink()


def test_no_network_reaches_the_host(backend, listener):
    src = candidate(f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), 2)")
    assert not policy.check(src).accepted
    out = run(backend, src)  # its own network namespace: its loopback is not the host's
    assert not out.ok
    assert "refused" in out.error["message"] or "unreachable" in out.error["message"]


def test_the_api_key_never_reaches_the_candidate(backend, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret-123")
    src = candidate("import os\nraise ValueError('key=' + str(os.getenv('ANTHROPIC_API_KEY')))")
    out = run(backend, src)
    assert "sk-secret-123" not in str(out.error) + out.log_tail
    assert "key=None" in str(out.error)


def test_the_data_is_read_only(backend):
    folder = tempfile.mkdtemp(dir="/var/tmp")  # outside /tmp, which the sandbox replaces
    try:
        data = os.path.join(folder, "inputs.npy")
        with open(data, "wb") as f:
            f.write(b"original")
        out = run(backend, candidate(f"open('{data}', 'wb').write(b'changed')"))
        # bwrap shows the host read-only; a container does not see it at all
        assert not out.ok and ("Read-only file system" in out.error["message"]
                               or "No such file" in out.error["message"])
        with open(data, "rb") as f:
            assert f.read() == b"original"
    finally:
        shutil.rmtree(folder)


def test_an_endless_loop_is_killed_at_the_wall_clock_limit(backend):
    out = run(backend, candidate("while True:\n    pass"), Limits(timeout_s=8.0))
    assert not out.ok and out.error["kind"] == "timeout"


def test_a_fork_bomb_is_contained(backend):
    src = candidate("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                    "        pass")
    out = run(backend, src, Limits(timeout_s=10.0))
    assert not out.ok and out.error["kind"] in ("timeout", "runtime", "oom")


def test_a_memory_bomb_is_contained(backend):
    out = run(backend, candidate("x = bytearray(10**11)"))
    assert not out.ok and out.error["kind"] == "oom"


def test_a_flood_of_stdout_is_capped(backend):
    flood = candidate("while True:\n    print('x' * 100000)")
    out = run(backend, flood, Limits(timeout_s=20.0, file_mb=8))
    assert not out.ok
    assert len(out.log_tail) <= 4000


def test_a_forged_result_is_refused(backend):
    forged = ('import json, os\nopen("response.json", "w").write(json.dumps({"ok": True, '
              '"check": {"n_params": "FORGED", "forward_ms": 1, "latent_dim": 8, '
              '"grad_fraction": 1, "roundtrip_error": 0, "warnings": []}}))\nos._exit(0)')
    out = run(backend, candidate(forged))
    assert not out.ok and out.error["kind"] == "protocol", out.error
    assert "n_params" not in str(out.check)


@pytest.mark.parametrize("name", list(template_sources()))
def test_templates_pass_and_the_next_candidate_runs_after_the_hostile_ones(backend, name):
    source = template_sources()[name]
    out = runner.check(source, latent_dim=source_width(source), backend=backend)
    assert out.ok and out.check["n_params"] > 0, out


def test_shape_errors_come_back_classified():
    src = candidate("pass").replace("return self.out(z), z, z[:, -1]",
                                    "return self.out(z)[..., :3], z, None")
    out = runner.check(src, latent_dim=8)
    assert not out.ok and out.error["kind"] == "shape" and "(4, 200, 20)" in out.error["message"]


def test_policy_violations_never_start_a_worker(monkeypatch):
    monkeypatch.setattr(process, "run", lambda *a, **k: pytest.fail("a worker started"))
    out = runner.check(candidate("import os"))
    assert out.error["kind"] == "policy" and "line " in out.error["message"]


def test_bwrap_is_the_level_when_installed():
    if shutil.which("bwrap"):
        assert process.isolation_level() == "bwrap"


def test_evaluate_trains_in_the_sandbox_and_returns_validated_arrays(backend):
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((8, 40, 21)).astype(np.float32)
    targets = np.tanh(inputs[..., :20]).astype(np.float32)
    targets[6:] = 0.0  # test trials hidden from the sandbox
    epochs = []
    out = runner.evaluate(template_sources()["T5"], inputs, targets,
                          {"train": [0, 1, 2, 3], "val": [4, 5]}, latent_dim=8,
                          train={"max_epochs": 2, "batch_size": 2, "verify": False},
                          lim=Limits(timeout_s=120.0), backend=backend, progress=epochs.append)
    assert out.ok, out
    # the worker's epoch lines reach the host (read while it runs and once more at its end)
    assert epochs and epochs[-1]["epoch"] == epochs[-1]["total"] == 2
    assert epochs[-1]["train_loss"] == out.record["train_loss"]
    assert out.record["epochs"] == 2 and out.record["strategy"] == "direct"
    assert out.arrays["predictions"].shape == (8, 40, 20)
    assert out.arrays["latents"].shape == (8, 8, 8)  # every 5th step
    assert out.arrays["null_latents"].shape == (3, 8, 8, 8)  # one per initialisation seed
    for hidden in ("selection", "test"):
        with pytest.raises(ValueError, match="selection or test"):
            runner.evaluate("", inputs, targets, {"train": [0], "val": [1], hidden: [2]})


def test_forged_arrays_are_refused(backend):
    import numpy as np

    inputs = np.zeros((4, 10, 21), np.float32)
    forged = candidate("pass").replace(
        "        z = torch.tanh(self.lin(x))",
        "        z = torch.tanh(self.lin(x)) * float('nan')")
    out = runner.evaluate(forged, inputs, np.zeros((4, 10, 20), np.float32),
                          {"train": [0, 1], "val": [2]}, latent_dim=8,
                          train={"max_epochs": 1, "verify": False}, lim=FAST,
                          backend=backend)
    assert not out.ok and not out.arrays


def test_stale_containers_of_dead_owners_go_and_live_ones_stay():
    from sandbox import docker_backend

    if docker_backend.client() is None and not IN_CI:
        pytest.skip("no docker engine answers")

    c = runner.docker_client()
    tag = docker_backend.image_tag()
    labels = {docker_backend.LABEL: "1"}
    dead = c.containers.create(tag, ["true"], labels={**labels, docker_backend.OWNER: "999999"})
    live = c.containers.create(tag, ["true"],
                               labels={**labels, docker_backend.OWNER: str(os.getpid())})
    try:
        docker_backend.remove_stale(c)
        ids = {x.id for x in c.containers.list(all=True, filters={"label": docker_backend.LABEL})}
        assert dead.id not in ids and live.id in ids
    finally:
        live.remove(force=True)


def _workers_of(job) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(job).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("level", ["limits-only", "bwrap"])
def test_an_interrupted_job_leaves_no_worker_behind(backend, level, tmp_path):
    """Ctrl-C in the orchestrator while a candidate runs: the worker goes too."""
    if backend == "docker" and level == "bwrap":
        pytest.skip("one case is enough for docker: the level is the process backend's")
    if level == "bwrap" and process.isolation_level() != "bwrap":
        pytest.skip("bubblewrap is not installed")
    job, out = tmp_path / "job", tmp_path / "out"
    job.mkdir()
    out.mkdir()
    (job / "request.json").write_text(json.dumps(
        {"task": "check", "source": candidate("while True:\n    pass"),
         "config": {"latent_dim": 8}}))
    start = time.monotonic()

    def interrupt(pids=None):
        if time.monotonic() - start > 3.0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        if backend == "docker":
            from sandbox import docker_backend

            docker_backend.run(runner.docker_client(), job, out, FAST, interrupt)
        else:
            process.run(job, out, FAST, level, interrupt)
    if backend == "docker":
        from sandbox import docker_backend

        left = runner.docker_client().containers.list(
            all=True, filters={"label": f"{docker_backend.OWNER}={os.getpid()}"})
        assert not left
        return  # a container's worker sees /job, not the host's path: the label is the check
    end = time.monotonic() + 5.0  # a killed process takes a moment to be reaped
    while _workers_of(job) and time.monotonic() < end:
        time.sleep(0.1)
    assert not _workers_of(job)


def test_a_training_failure_comes_back_with_its_own_message():
    import numpy as np

    x = np.zeros((4, 20, 21), np.float32)
    out = runner.evaluate(candidate("raise RuntimeError('boom in init')"), x,
                          np.zeros((4, 20, 20), np.float32), {"train": [0, 1], "val": [2]},
                          latent_dim=8, train={"max_epochs": 1}, backend="process")
    assert not out.ok and out.error["kind"] == "runtime"
    assert "boom in init" in out.error["message"]  # not "malformed evaluate response"


def test_the_default_dataset_size_trains_within_the_evaluate_limits():
    """256 trials × 2000 ms: the full-size arrays, rollouts and controls fit the limits
    (a fixed 4 GiB address space did not)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 2000, 21)).astype(np.float32)
    y = rng.random((256, 2000, 20)).astype(np.float32)
    lim = runner.evaluate_limits(0.003, "cpu")
    assert lim.memory_mb >= 6144 and not lim.cuda  # the address space is capped on CPU
    out = runner.evaluate(template_sources()["T5"], x, y,
                          {"train": list(range(180)), "val": list(range(180, 218))},
                          train={"time_budget_h": 0.003, "max_epochs": 1, "verify": False},
                          backend="process")
    assert out.ok, out.error
    assert out.arrays["latents"].shape == (256, 400, 64)  # every 5th step
    assert out.arrays["null_latents"].shape == (3, 256, 400, 64)


def test_less_than_full_isolation_is_never_chosen_silently(monkeypatch):
    from sandbox import docker_backend

    monkeypatch.setattr(docker_backend, "client", lambda: None)
    monkeypatch.setattr(process, "isolation_level", lambda: "unshare-net")
    for name in ("auto", "process"):
        with pytest.raises(runner.SandboxError, match=r"install bubblewrap .* --allow-degraded"):
            runner.resolve_backend(name)
        assert runner.resolve_backend(name, allow_degraded=True) == "degraded"
    with pytest.raises(runner.SandboxError, match="bubblewrap does not work here"):
        runner.check(candidate("pass"), backend="process")


def test_the_cli_stops_with_one_line_naming_the_fix(monkeypatch, tmp_path, capsys):
    from agent.cli import main
    from sandbox import docker_backend

    monkeypatch.setattr(docker_backend, "client", lambda: None)
    monkeypatch.setattr(process, "isolation_level", lambda: "limits-only")
    model = tmp_path / "m.py"
    model.write_text(candidate("pass"))
    monkeypatch.setattr("sys.argv", ["descartes-agent", "check", str(model)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--allow-degraded" in err and "Traceback" not in err


def test_a_failing_image_build_is_one_line(monkeypatch, tmp_path):
    from sandbox import docker_backend

    failing = tmp_path / "debootstrap"
    failing.write_text("#!/bin/sh\necho 'E: no mirror reachable' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(docker_backend, "debootstrap", lambda: str(failing))
    with pytest.raises(docker_backend.BuildError) as e:
        docker_backend.build_image(object(), log=lambda m: None)
    assert str(e.value).count("\n") == 0 and "E: no mirror reachable" in str(e.value)


def test_a_dataclass_model_with_dict_properties_passes_and_runs(backend):
    from test_policy import LLM_IDIOMS as source

    assert "@dataclass" in source and "PROPERTIES = dict(" in source
    out = runner.check(source, latent_dim=8, backend=backend)
    assert out.ok, out.error
