"""Cheating candidates inside a real search loop, with the static policy bypassed: one
hunts for the answers, one forges its record and sends an npz bomb. The loop records
both for what they are, its budgets untouched, and goes on."""

import shutil
import uuid

import pytest
from test_sandbox import candidate
from test_sandbox_escape import FORGE, _bomb

from agent.config import RunConfig
from agent.live import PlainLines
from agent.orchestrator import Orchestrator
from agent.prompt import Proposal
from descartes_core import dataset
from descartes_core.dataset import SimulationSpec
from sandbox import policy
from sandbox.process import PROJECT_ROOT

# Finds every biovars.npy / outputs.npy it can see and returns them as its latents and
# predictions: a perfect score wherever the answers are visible. It skips the system's and
# the interpreters' own libraries (where no dataset lands, and whose 170k files on a cold
# disk would run the shape check past its limit).
HUNT = '''
import os
import numpy as np
self.found = []
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in (
        "/proc", "/sys", "/dev", "/usr/lib", "/usr/share", "/usr/include", "/usr/src")
        and d not in ("site-packages", "dist-packages", "__pycache__")]
    if "biovars.npy" in files and "outputs.npy" in files:
        try:
            pair = [torch.as_tensor(np.load(os.path.join(root, f)), dtype=torch.float32)
                    for f in ("biovars.npy", "outputs.npy")]
        except (ValueError, OSError, TypeError):
            continue
        if all(bool(torch.isfinite(a).all()) for a in pair):
            self.found.append(pair)
'''
HUNT_FORWARD = '''
    def forward(self, x, state=None):
        z = torch.tanh(self.lin(x))
        y = self.out(z)
        for b, o in self.found:
            if b.shape[:2] == o.shape[:2] == x.shape[:2] and o.shape[2:] == y.shape[2:] \
                    and b.ndim == 3 and b.shape[2] >= z.shape[2]:
                z = z + 0.0 * z.sum() + b[..., : z.shape[-1]]
                y = y + 0.0 * y.sum() + o
                break
        return y, z, z[:, -1]
'''


class Cheaters:
    name = "scripted"

    def __init__(self, sources):
        self.sources = list(sources)

    def drain_calls(self):
        return []

    def propose(self, brief):
        return Proposal(f"cheat-{brief.iteration}", "", {}, self.sources[brief.iteration])


@pytest.fixture
def ds_in_the_checkout():
    """The dataset in a folder of the project root, where a user may keep recordings."""
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    folder = PROJECT_ROOT / f"my-recordings-{uuid.uuid4().hex[:6]}"
    shutil.copytree(path, folder)
    folder.chmod(0o755)
    yield dataset.load(folder)
    shutil.rmtree(folder)


def test_cheaters_in_a_run_find_nothing_forge_nothing_and_the_loop_goes_on(
        ds_in_the_checkout, tmp_path, monkeypatch, backend):
    monkeypatch.setattr(policy, "check", lambda source, **_: policy.Verdict([], {}))
    hunt = candidate(HUNT)
    hunt = hunt[:hunt.index("    def forward")] + HUNT_FORWARD
    # (another nonlinearity: the two would otherwise compute the same, and the second be
    # refused as the first's twin before it could forge anything)
    forge = candidate(FORGE.format(bomb=_bomb(64))).replace("torch.tanh(", "torch.sigmoid(")
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=(),
                    max_expansions=2, patience=5, sandbox=backend,
                    train={"max_epochs": 1, "verify": False})
    orch = Orchestrator(cfg, ds_in_the_checkout, architect=Cheaters([hunt, forge]),
                        monitor=PlainLines(lambda line: None))
    summary = orch.run()
    hunted, forged = orch.ledger.iterations(orch.run_id)
    assert hunted["status"] == "scored", hunted.get("attempts")
    s = hunted["scores"]
    assert s["spike_corr"] < 0.9  # it did not get the outputs …
    assert s["recovered"] <= max(s["random_recovered"], s["input_recovered"])  # … nor biovars
    assert forged["status"] == "failed" and forged["failure_kind"] == "protocol"
    assert 0 < forged["train_hours"] < 0.1  # the host's clock, not the forged -3.6e9 s
    assert summary["iterations"] == 2 and summary["hours"] > 0
