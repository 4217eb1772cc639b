"""The search with several candidates in flight, on the local executor and on a real Ray
cluster started here (127.0.0.1 only, dashboard and usage statistics off): every iteration
recorded once, ledger and branches in agreement, the templates trained exactly as the
serial search trains them, and a Ray worker killed mid-candidate retried, then recorded
as `infrastructure` while the run goes on."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import runs

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
    """The smoke preset's templates phase, run serially (the reference)."""
    run_dir = tmp_path_factory.mktemp("serial")
    _cli([*SMOKE, "--max-llm-expansions", "0", "--finalists", "0", "--run-dir", str(run_dir)])
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
