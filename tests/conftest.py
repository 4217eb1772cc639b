import os

import pytest

IN_CI = os.environ.get("CI") == "true"


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
