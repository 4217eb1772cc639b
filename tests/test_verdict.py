"""The verdict inside a real search: the test split stays locked until the finalists are
scored, a candidate whose training failed never wins, and distillation gets its teacher."""

import json
import subprocess

import pytest

from agent import prompt
from agent.config import RunConfig
from agent.live import PlainLines
from agent.offline import OfflineArchitect
from agent.orchestrator import Orchestrator
from agent.prompt import Proposal
from descartes_core import dataset, scoring
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec

# Untrainable (its output is a constant it cannot move far), but its latents are a rich
# random projection of the inputs: under a count objective its untrained latents could win.
RICH_BUT_UNTRAINABLE = '''import torch
import torch.nn as nn

PROPERTIES = {"family": "frozen-reservoir", "time_handling": "custom",
              "gradient_strategy": "direct", "latent_structure": "unconstrained",
              "input_coupling": "additive", "solver": "euler"}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.lin = nn.Linear(n_inputs, latent_dim)
        self.level = nn.Parameter(torch.zeros(n_outputs))

    def forward(self, x, state=None):
        z = torch.tanh(self.lin(torch.cumsum(x, dim=1) * 0.05))
        y = self.level.expand(x.shape[0], x.shape[1], -1) + 0.0 * z.mean()
        return y, z, z[:, -1]
'''
PLANTED_R, PLANTED_SPIKE, PLANTED_COUNT = 0.654321, 0.777777, 157


class Recording:
    """The offline architect's proposals after the untrainable one; every brief, and the
    LLM prompt it would have made, are kept."""

    name = "scripted"

    def __init__(self):
        self.offline, self.seen = OfflineArchitect(0), []

    def drain_calls(self):
        return []

    def propose(self, brief):
        self.seen.append(repr(brief) + prompt.user_prompt(brief))
        if brief.iteration == 0:
            return Proposal("frozen", "", {}, RICH_BUT_UNTRAINABLE)
        return self.offline.propose(brief)


@pytest.fixture(scope="module")
def ds():
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=16, duration_ms=150,
                                                         burn_in_ms=100.0))
    return dataset.load(path)


def test_test_figures_appear_only_in_the_finals_and_failures_never_win(ds, tmp_path,
                                                                       monkeypatch):
    real = scoring.verdict

    def planted(*args, on, **kw):  # every test-trial score carries recognisable numbers
        s = real(*args, on=on, **kw)
        if on == "test":
            s.correlations = [PLANTED_R] * 160
            s.spike_corr, s.recovered, s.beyond_controls = PLANTED_SPIKE, PLANTED_COUNT, \
                PLANTED_COUNT
        return s

    monkeypatch.setattr(scoring, "verdict", planted)
    arch = Recording()
    cfg = RunConfig(run_dir=str(tmp_path), templates=("T5",), max_expansions=2, patience=5,
                    sandbox="process", finalists=2, final_seeds=1, objective="recovered",
                    train={"max_epochs": 2, "verify_steps": 30, "verify_window": 50})
    orch = Orchestrator(cfg, ds, architect=arch, monitor=PlainLines(lambda line: None))
    rows_during_run = []
    record = orch.ledger.record_iteration
    monkeypatch.setattr(orch.ledger, "record_iteration", lambda run_id, it, calls=(): (
        rows_during_run.append(json.dumps(it, default=str)), record(run_id, it, calls)))
    summary = orch.run()

    rows = orch.ledger.iterations(orch.run_id)
    frozen = next(r for r in rows if r["name"] == "frozen")
    assert frozen["status"] == "failed" and frozen["failure_kind"] == "verifier_failed"
    assert summary["best"]["name"] != "frozen"
    assert all(f["number"] != frozen["number"] for f in summary["finals"])

    # the plant reaches where test figures belong …
    finals = orch.ledger.finals(orch.run_id)
    assert finals and all(f["test"]["spike_corr"] == PLANTED_SPIKE for f in finals)
    assert all(f["selection"]["on"] == "selection" for f in finals)
    assert summary["finals"][0]["test"]["recovered"] == [PLANTED_COUNT, 0.0]
    # … and nowhere the search read or wrote while it ran
    told = arch.seen + rows_during_run
    assert len(arch.seen) >= 2 and len(rows_during_run) == len(rows)
    for text in told:
        assert "0.65432" not in text and "0.77777" not in text and "0.77778" not in text
    assert all(r["recovered"] != PLANTED_COUNT for r in rows if r["recovered"] is not None)
    assert all((r["scores"] or {}).get("on") in (None, "selection") for r in rows)
    # the sealed moments stay out of the model repository
    tracked = subprocess.run(["git", "-C", str(orch.dir), "log", "--all", "--name-only",
                              "--format="], capture_output=True, text=True).stdout
    assert "sealed" not in tracked and (orch.dir / "sealed").is_dir()
    assert "final.json" in tracked


def test_distillation_trains_on_the_teacher_it_is_sent(ds, tmp_path):
    from agent.evaluator import Evaluator

    ev = Evaluator(ds, backend="process", train={"max_epochs": 1, "verify": False})
    src = template_sources()["T5"].replace('"gradient_strategy": "direct"',
                                           '"gradient_strategy": "distillation"')
    assert '"distillation"' in src
    out = ev.train(src)
    assert out.ok, out.error
    assert out.record["strategy"] == "distillation" and out.record["strategy_note"] is None
    hidden = [*ds.split("selection"), *ds.split("test")]
    assert not ev.teacher[hidden].any() and ev.teacher[ds.split("train")].any()
