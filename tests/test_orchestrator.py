"""The loop's repair and duplicate paths, driven by a scripted architect."""

import json

import pytest
from llm_server import Server

from agent import llm
from agent.config import RunConfig, new_run_id
from agent.live import PlainLines
from agent.offline import OfflineArchitect
from agent.orchestrator import Orchestrator
from agent.prompt import Brief, Proposal
from descartes_core import dataset
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec

BAD = "import os\n" + template_sources()["T5"]
# T5 with its attributes and locals renamed and a comment added: the same behaviour
RENAMED = (template_sources()["T5"].replace("self.nu", "self.decay").replace("theta", "angle")
           .replace("kernel", "powers").replace("readout", "head")
           .replace("class Model", "# renamed\nclass Model"))


QUIET = PlainLines(lambda line: None)


class Scripted:
    """First a policy violation (then a repair), then a copy of a template, then the same
    template renamed."""

    name = "scripted"

    def __init__(self):
        self.feedback = []
        self.offline = OfflineArchitect(0)

    def drain_calls(self):
        return []

    def propose(self, brief):
        if brief.feedback:
            self.feedback.append(brief.feedback)
        if brief.iteration == 0:
            if brief.feedback is None:
                return Proposal("bad", "imports os", {}, BAD)
            return self.offline.propose(brief)
        if brief.iteration == 1:
            return Proposal("copy", "a copy of T5", {}, template_sources()["T5"])
        return Proposal("renamed", "T5 renamed", {}, RENAMED)


@pytest.fixture(scope="module")
def ds():
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    return dataset.load(path)


def test_a_rejected_candidate_is_repaired_and_a_duplicate_refused(ds, tmp_path):
    arch = Scripted()
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=("T5",),
                    max_expansions=3, patience=5, sandbox="process",
                    train={"max_epochs": 1, "verify": False})
    orch = Orchestrator(cfg, ds, architect=arch, monitor=QUIET)
    orch.run()
    rows = orch.ledger.iterations(orch.run_id)
    assert [r["status"] for r in rows] == ["scored", "scored", "refused", "refused"]
    assert "import of 'os' is not allowed" in arch.feedback[0]
    assert rows[2]["failure_kind"] == rows[3]["failure_kind"] == "duplicate"
    assert all("tried before" in f for f in arch.feedback[1:3])
    # the renamed copy is new text but the same behaviour: refused as iteration 1's twin
    assert rows[3]["attempts"][0]["source_hash"] != rows[0]["attempts"][0]["source_hash"]
    assert "computes exactly what iteration 1 computes" in rows[3]["attempts"][0]["message"]
    assert orch.repo.read("3", "check.json").count("duplicate") == 1


def _reply(seed: int) -> str:
    p = OfflineArchitect(seed).propose(Brief(0))
    header = json.dumps({"name": f"llm-{seed}", "reasoning": p.reasoning,
                         "properties": p.properties})
    return f"Here it is.\n```json\n{header}\n```\n```python\n{p.source}```\n"


def _llm_run(ds, tmp_path, name, llm_cfg, replay_from=None):
    run_id = new_run_id()
    arch = llm.build(name, llm_cfg, tmp_path / run_id, replay_from=replay_from)
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=("T5",),
                    max_expansions=2, patience=5, sandbox="process", architect=name,
                    train={"max_epochs": 1, "verify": False})
    orch = Orchestrator(cfg, ds, run_id=run_id, architect=arch, monitor=QUIET)
    orch.run()
    return orch


def test_an_llm_run_is_repaired_metered_recorded_and_replayed_byte_for_byte(ds, tmp_path):
    seeds = iter(range(11, 20))
    script = ["An LSTM would do.", lambda body: _reply(next(seeds))]
    with Server(script) as server:
        orch = _llm_run(ds, tmp_path, "anthropic", llm.LLMConfig(
            "anthropic", api_key="k", base_url=server.url, timeout_s=5.0))
    rows = orch.ledger.iterations(orch.run_id)
    assert [(r["architect"], r["status"]) for r in rows] == [
        ("template", "scored"), ("anthropic", "scored"), ("anthropic", "scored")]
    assert rows[1]["repairs"] == 1 and rows[1]["attempts"][0]["kind"] == "parse"
    assert "class Model" in server.requests[1]["body"]["messages"][0]["content"]  # feedback
    calls = orch.ledger.calls(orch.run_id)
    assert [c["iteration"] for c in calls] == [2, 2, 3]
    assert all(c["input_tokens"] == 1200 and c["cost_usd"] > 0 for c in calls)
    meta = json.loads(orch.repo.read("2", "proposal.json"))
    assert meta["architect"] == "anthropic" and meta["output_tokens"] == 1600
    assert meta["prompt_hash"] == calls[1]["prompt_hash"]
    # replay: the same prompts, answered from the recording, give the same run
    again = _llm_run(ds, tmp_path, "replay", None, replay_from=orch.dir)
    replayed = again.ledger.iterations(again.run_id)
    for a, b in zip(rows, replayed, strict=True):
        assert again.repo.read(b["branch"]) == orch.repo.read(a["branch"])
        assert b["scores"]["correlations"] == a["scores"]["correlations"]
    assert [c["prompt_hash"] for c in again.ledger.calls(again.run_id)] == [
        c["prompt_hash"] for c in calls]


def test_three_architect_failures_fall_back_to_the_offline_architect(ds, tmp_path):
    with Server([("status", 500)]) as server:
        run_id = new_run_id()
        arch = llm.build("anthropic", llm.LLMConfig("anthropic", api_key="k",
                                                    base_url=server.url, max_retries=0),
                         tmp_path / run_id)
        cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=(),
                        max_expansions=1, sandbox="process",
                        train={"max_epochs": 1, "verify": False})
        orch = Orchestrator(cfg, ds, run_id=run_id, architect=arch, monitor=QUIET)
        orch.run()
    [row] = orch.ledger.iterations(run_id)
    assert row["architect"] == "offline" and row["status"] == "scored"
    calls = orch.ledger.calls(run_id)
    assert len(calls) == 3 and all("500" in c["error"] for c in calls)
    assert len(server.requests) == 3


class Interrupting:
    """Ctrl-C as soon as the first candidate starts training."""

    def event(self, kind, **data):
        if kind == "activity" and data["what"] == "training":
            raise KeyboardInterrupt


def test_ctrl_c_marks_the_run_interrupted_and_it_resumes(ds, tmp_path):
    from agent import runs

    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=("T5",),
                    max_expansions=0, sandbox="process", train={"max_epochs": 1, "verify": False})
    orch = Orchestrator(cfg, ds, monitor=Interrupting())
    with pytest.raises(KeyboardInterrupt):
        orch.run()
    run = runs.open_run(tmp_path)
    assert run.state() == "interrupted" and not run.ledger.iterations(run.id)
    again = Orchestrator(cfg, ds, run_id=run.id, monitor=QUIET)
    summary = again.run()
    assert summary["iterations"] == 1 and summary["stop"] == "expansions used"
    assert run.state() == "finished" and [n for n, _, _ in run.repo.iterations()] == [1]
