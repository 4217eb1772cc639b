"""The search with several candidates in flight, on the local executor and on a real Ray
cluster started here (127.0.0.1 only, dashboard and usage statistics off): every iteration
recorded once, ledger and branches in agreement, the templates trained exactly as the
serial search trains them, and a Ray worker killed mid-candidate retried, then recorded
as `infrastructure` while the run goes on. Cancelling a Ray task mid-training leaves no
docker container behind, whether the task stops itself or has to be killed, and a
container whose owner was killed stops at its own wall clock."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent import runs
from agent.executor import Job, Workload
from agent.ray_executor import RayExecutor
from sandbox import docker_backend
from sandbox.docker_backend import JOB_KEY, OWNER
from sandbox.process import OUT, pid_alive
from sandbox.protocol import PROGRESS

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]
RAY = str(Path(sys.executable).parent / "ray")
SMOKE = ["run", "--preset", "smoke", "--sandbox", "process"]


def _cli(args, timeout=600):
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _templates(run_dir: Path) -> dict[str, tuple]:
    """Per template: its committed source and what it scored."""
    (r,) = runs.runs(run_dir)
    return {row["name"]: (r.repo.read(row["branch"]), row["recovered"], row["spike_corr"],
                          row["beyond_controls"])
            for row in r.ledger.iterations(r.id) if row["architect"] == "template"}


@pytest.fixture(scope="module")
def serial_templates(tmp_path_factory):
    """The smoke preset's templates phase, run serially (the reference). It reads the
    session's dataset cache, as the tests do: a cache draws its circuit once, so another
    cache would hold other data."""
    run_dir = tmp_path_factory.mktemp("serial")
    with pytest.MonkeyPatch.context() as mp:  # module scope: before the autouse fixture
        mp.setenv("DESCARTES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        _cli([*SMOKE, "--max-llm-expansions", "0", "--finalists", "0",
              "--run-dir", str(run_dir)])
    return _templates(run_dir)


def _check_recorded_once(run_dir: Path) -> list[dict]:
    (r,) = runs.runs(run_dir)
    rows = r.ledger.iterations(r.id)
    assert [row["number"] for row in rows] == [1, 2, 3, 4, 5]
    branches = r.repo.iterations()
    assert [n for n, _, _ in branches] == [1, 2, 3, 4, 5]  # one branch per row, no strays
    for row, (_, branch, head) in zip(rows, branches, strict=True):
        assert row["branch"] == branch
        c = r.repo.repo.commit(head)  # a finalist's branch holds one more commit: final.json
        assert row["commit_sha"] in (head, c.parents[0].hexsha)
        results = json.loads(r.repo.read(branch, "results.json"))
        assert results["status"] == row["status"]
    sources = [r.repo.read(row["branch"]) for row in rows]
    assert len(set(sources)) == 5
    assert r.state() == "finished" and not (r.dir / "flight.json").exists()
    return rows


def _candidate_processes() -> list[int]:
    """Ray workers running a candidate (their title is ray::candidate-<key>)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()
            if line.split()[1:2] and line.split()[1].startswith("ray::candidate-")]


def test_two_in_flight_on_the_local_executor(tmp_path, serial_templates):
    out = _cli([*SMOKE, "--parallel", "2", "--run-dir", str(tmp_path)])
    assert "local slot 0 (cpu)" in out and "local slot 1 (cpu)" in out
    rows = _check_recorded_once(tmp_path)
    assert {row["training"]["where"] for row in rows if row["training"]} <= {
        "local slot 0 (cpu)", "local slot 1 (cpu)"}
    assert _templates(tmp_path) == serial_templates  # same source, seed, data: same score


@pytest.fixture
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1, started as a user would (`ray start --head`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep 127.0.0.1, never the public IP
    subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                    str(port), "--num-cpus", "2", "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, env=env, capture_output=True,
                   timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_a_ray_cluster_runs_two_at_once_and_a_killed_worker_is_infrastructure(
        tmp_path, serial_templates, ray_cluster):
    proc = subprocess.Popen([*CLI, *SMOKE, "--parallel", "2", "--executor", "ray",
                             "--ray-address", ray_cluster, "--run-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed: set[int] = set()
    try:
        # the first expansion's worker dies mid-training, on its try and on its retry
        while proc.poll() is None and len(killed) < 2:
            out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True,
                                 text=True).stdout
            for line in out.splitlines():
                pid, *title = line.split()
                if title[:1] == ["ray::candidate-0003"] and int(pid) not in killed:
                    time.sleep(1.0)  # inside its sandbox by now
                    os.kill(int(pid), signal.SIGKILL)
                    killed.add(int(pid))
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert len(killed) == 2
    rows = _check_recorded_once(tmp_path)
    third = rows[2]
    assert (third["status"], third["failure_kind"]) == ("failed", "infrastructure")
    assert third["training"]["tries"] == 2 and "WorkerCrashed" in third["training"]["retried"]
    assert "not the candidate's fault" in third["failure_message"]
    others = [row for row in rows if row["number"] != 3]
    assert all(row["status"] == "scored" for row in others)
    assert all(row["training"]["where"].startswith("ray node ") for row in others)
    assert _templates(tmp_path) == serial_templates
    assert _candidate_processes() == []  # no task outlives the run


TEMPLATE = (Path(__file__).parents[1] / "descartes_core/templates/t5_diagonal_ssm.py").read_text()


@pytest.fixture(scope="module")
def engine():
    """The docker engine, with the sandbox image built."""
    from sandbox import docker_backend, runner

    if docker_backend.client() is None and os.environ.get("CI") != "true":
        pytest.skip("no docker engine answers")
    return runner.docker_client()


def _long_training() -> Workload:
    """A workload whose training would take an hour: it is always cancelled mid-way."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((8, 200, 21)).astype(np.float32)
    targets = rng.standard_normal((8, 200, 20)).astype(np.float32)
    train = {"time_budget_h": 1.0, "max_epochs": 100_000, "patience": 100_000,
             "verify": False, "device": "cpu"}
    return Workload(inputs, targets, np.zeros_like(targets), None,
                    {"train": list(range(6)), "val": [6, 7]}, train, "docker")


def _containers(engine, task_id: str) -> list:
    """The containers, running or stopped, labelled with this Ray task's id."""
    return engine.containers.list(all=True, filters={"label": f"{JOB_KEY}={task_id}"},
                                  ignore_removed=True)


def _training(engine, h, guard_s: float = 300.0) -> tuple:
    """The task's container, once it has reported an epoch (it is mid-training), and the
    task's id."""
    import ray

    task_id, end = h.ref.task_id().hex(), time.monotonic() + guard_s
    while time.monotonic() < end:
        if ray.wait([h.ref], timeout=0)[0]:
            raise AssertionError(f"the task ended before training: {ray.get(h.ref)}")
        for c in _containers(engine, task_id):
            out = next((m["Source"] for m in c.attrs["Mounts"] if m["Destination"] == OUT), "")
            if c.status == "running" and (Path(out) / PROGRESS).is_file() and \
                    (Path(out) / PROGRESS).stat().st_size:
                return c, task_id
        time.sleep(0.5)
    raise AssertionError("the candidate never started training in its container")


def _gone(engine, task_id: str, guard_s: float) -> list:
    end = time.monotonic() + guard_s
    while (left := _containers(engine, task_id)) and time.monotonic() < end:
        time.sleep(0.5)
    return left


@pytest.fixture
def ray_driver():
    """This process as a Ray driver, disconnected afterwards (each test has its cluster)."""
    yield
    import ray

    ray.shutdown()


def test_a_cancelled_ray_task_removes_its_container(engine, ray_cluster, ray_driver):
    ex = RayExecutor(_long_training(), 1, address=ray_cluster)
    try:
        h = ex.submit(Job("0001", TEMPLATE, 8))
        _, task_id = _training(engine, h)
        ex.cancel(h)
        assert _gone(engine, task_id, 60) == []  # the task stopped and removed it itself
    finally:
        ex.close()


def test_a_ray_task_that_cannot_stop_itself_is_killed_and_its_container_removed(
        engine, ray_cluster, ray_driver):
    ex = RayExecutor(_long_training(), 1, address=ray_cluster)
    try:
        h = ex.submit(Job("0001", TEMPLATE, 8))
        container, task_id = _training(engine, h)
        worker = int(container.labels[OWNER])
        os.kill(worker, signal.SIGSTOP)  # it can neither see the cancel nor clean up
        ex.cancel(h)
    finally:
        ex.close()  # kills it after the grace, then removes its containers by label
    assert not pid_alive(worker)
    assert _containers(engine, task_id) == []


def test_a_container_whose_owner_cannot_act_stops_at_its_own_wall_clock(engine):
    label = f"wall-clock-{os.getpid()}"
    owner = subprocess.Popen([sys.executable, "-c", f"""if True:
        from sandbox import docker_backend, runner
        from sandbox.process import Limits
        with docker_backend.job_label({label!r}):
            runner.run_job("check", "import time\\ntime.sleep(10_000)\\n", {{}},
                           lim=Limits(timeout_s=15), backend="docker")
        """])
    try:
        end = time.monotonic() + 120
        while not any(c.status == "running" for c in _containers(engine, label)):
            assert time.monotonic() < end and owner.poll() is None
            time.sleep(0.2)
        # stopped, not killed: its clock never fires, and its container is nobody's stale
        # one to remove (a dead owner's would be)
        owner.send_signal(signal.SIGSTOP)
        end = time.monotonic() + 15 + docker_backend.WALL_MARGIN_S + 60
        while (states := [c.status for c in _containers(engine, label)]) == ["running"]:
            assert time.monotonic() < end, "the container outlived its owner's wall clock"
            time.sleep(1.0)
        assert states == ["exited"]
    finally:
        owner.kill()
        owner.wait()
        docker_backend.remove_job(engine, label)
