import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets the dataset cache of its session, never the user's."""
    monkeypatch.setenv("DESCARTES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
