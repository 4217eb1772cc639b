"""The loop's repair and duplicate paths, driven by a scripted architect."""

import pytest

from agent.offline import OfflineArchitect
from agent.orchestrator import Orchestrator, RunConfig
from agent.prompt import Proposal
from descartes_core import dataset
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec

BAD = "import os\n" + template_sources()["T5"]


class Scripted:
    """First a policy violation (then a repair), then a copy of a template, twice."""

    name = "scripted"

    def __init__(self):
        self.feedback = []
        self.offline = OfflineArchitect(0)

    def propose(self, k, gap, tried, feedback=None):
        if feedback:
            self.feedback.append(feedback)
        if k == 0:
            if feedback is None:
                return Proposal("bad", "imports os", {}, BAD)
            return self.offline.propose(0, gap, tried)
        return Proposal("copy", "a copy of T5", {}, template_sources()["T5"])


@pytest.fixture(scope="module")
def ds():
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    return dataset.load(path)


def test_a_rejected_candidate_is_repaired_and_a_duplicate_refused(ds, tmp_path):
    arch = Scripted()
    cfg = RunConfig(run_dir=str(tmp_path), templates=("T5",), max_expansions=2, patience=5,
                    sandbox="process", train={"max_epochs": 1, "verify": False})
    orch = Orchestrator(cfg, ds, architect=arch, log=lambda m: None)
    orch.run()
    rows = orch.ledger.iterations(orch.run_id)
    assert [r["status"] for r in rows] == ["scored", "scored", "refused"]
    assert "import of 'os' is not allowed" in arch.feedback[0]
    assert rows[2]["failure_kind"] == "duplicate"
    assert all("tried before" in f for f in arch.feedback[1:])
    assert orch.repo.read("3", "check.json").count("duplicate") == 1
