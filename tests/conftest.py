import os

import pytest

IN_CI = os.environ.get("CI") == "true"
# One circuit draw for the whole suite, in every process it starts: simulated data, and so
# every score a test asserts on, is the same on every machine and every run. The tests of
# the draw itself clear it (tests/test_secret_draw.py).
os.environ["DESCARTES_CIRCUIT_SECRET"] = "5ca1ab1e" * 4


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets the dataset cache of its session, never the user's."""
    monkeypatch.setenv("DESCARTES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(params=["process", "docker"], scope="module")
def backend(request):
    """Each sandbox backend; with CI=true neither may skip (CI installs bubblewrap and an
    engine runs on these machines)."""
    from sandbox import process, runner

    if request.param == "process" and process.isolation_level() != "bwrap" and not IN_CI:
        pytest.skip("bubblewrap is not installed (make test installs it as root)")
    if request.param == "docker":
        from sandbox import docker_backend

        if docker_backend.client() is None and not IN_CI:
            pytest.skip("no docker engine answers")
        runner.docker_client()  # builds the image on first use
    return request.param


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One `run --preset smoke` through the CLI, bubblewrap sandbox: (exit code, stdout,
    stderr, run folder). The CLI's and the library's tests read the same run, which is the
    longest thing the suite does."""
    import contextlib
    import io
    import sys

    from agent import cli

    runs = tmp_path_factory.mktemp("smoke")
    out, err = io.StringIO(), io.StringIO()
    mp = pytest.MonkeyPatch()
    mp.setenv("DESCARTES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    mp.setattr(sys, "argv", ["descartes-agent", "run", "--preset", "smoke", "--sandbox",
                             "process", "--run-dir", str(runs)])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                pytest.raises(SystemExit) as exit_info:
            cli.main()
    finally:
        mp.undo()
    return exit_info.value.code or 0, out.getvalue(), err.getvalue(), runs
