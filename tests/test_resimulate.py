"""A candidate that carries its own simulator, the policy fallen, in the real sandbox.

The equations are public, so arbitrary code in a job can re-simulate the inputs it is
given: here the candidate embeds the text of the project's channels, kernel and circuit,
builds them into modules inside the job (the job cannot import them: they are not
mounted), reads the raw inputs of every trial from its job folder, runs the published
circuit on them and returns the simulated hidden variables and TC rates as its latents
(width 180, as the ceiling's twins in shared/research/ceiling.md). It keeps its untrained
instances as noise, so that its own null does not hide it: the figure is measured against
the trusted controls, like the twins'.

Scored by the evaluator's own path (the verdict's probes and controls), the same job's
latents meet two datasets of the same spec: a secret draw, where they must fall far below
the exact circuit's 160/160, and the published circuit (`--jitter 0`), where they recover
nearly everything: the candidate works, so its low score on the draw is the draw's doing.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import PRESETS
from agent.evaluator import Evaluator
from descartes_core import dataset
from sandbox import policy
from sandbox.process import PROJECT_ROOT

CARRIED = ("descartes_core.channels", "descartes_core.circuit_kernel", "descartes_core.circuit")

TWIN = '''
import json
import sys
import types

import numpy as np
import torch
import torch.nn as nn

PROPERTIES = {"family": "twin", "time_handling": "custom", "gradient_strategy": "direct",
              "latent_structure": "unconstrained", "input_coupling": "additive",
              "solver": "euler"}
LATENT_DIM = 180
FILES = __FILES__
BURN_IN_MS = __BURN_IN_MS__
_TWIN = {}


def _resimulated():
    """Inputs of every trial as the trainer normalises them, and the twin's latents."""
    if not _TWIN:
        for name, text in FILES.items():  # the public equations, carried in the source
            module = types.ModuleType(name)
            sys.modules[name] = module
            exec(compile(text, name, "exec"), module.__dict__)
        circuit = sys.modules["descartes_core.circuit"]
        with np.load("/job/arrays.npz") as z:
            raw = z["inputs"]
        with open("/job/request.json") as f:
            train = json.load(f)["config"]["split"]["train"]
        res = circuit.simulate(raw.astype(np.float64), circuit.CircuitParams(),
                               burn_in_ms=BURN_IN_MS)
        rates, r = np.zeros(res.tc_spikes.shape), np.zeros(res.tc_spikes[:, 0].shape)
        for t in range(rates.shape[1]):  # the data's causal 10-ms exponential rate
            r = r * np.exp(-0.1) + 100.0 * res.tc_spikes[:, t]
            rates[:, t] = r
        z = np.concatenate([res.biovars, rates], axis=-1)
        z = (z - z[train].mean((0, 1))) / (z[train].std((0, 1)) + 1e-6)
        mu, sd = raw[train].mean((0, 1)), raw[train].std((0, 1)) + 1e-6
        _TWIN["x"] = torch.as_tensor((raw - mu) / sd)
        _TWIN["z"] = torch.as_tensor(z, dtype=torch.float32)
    return _TWIN["x"], _TWIN["z"]


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.lin = nn.Linear(n_inputs, latent_dim)
        self.out = nn.Linear(latent_dim, n_outputs)
        self.trained = False  # untrained instances (the null) answer noise

    def forward(self, x, state=None):
        z = torch.tanh(self.lin(x))
        if self.training and torch.is_grad_enabled() and x.shape[1] > 2:
            self.trained = True
        if self.trained:
            xs, zs = _resimulated()
            if x.shape[1] == xs.shape[1]:
                head = min(50, x.shape[1])
                d = ((xs[None, :, :head] - x[:, None, :head]) ** 2).mean((2, 3))
                z = zs[d.argmin(1)] + 0.0 * z
        return self.out(z), z, z[:, -1]
'''


def twin_source(burn_in_ms: float) -> str:
    """The candidate, with the project's simulator files embedded as text (the numba
    kernel uncached and serial: a cache needs a file, and a job gets one thread)."""
    files = {}
    for name in CARRIED:
        text = (PROJECT_ROOT / (name.replace(".", "/") + ".py")).read_text()
        files[name] = text.replace("@njit(parallel=True, cache=True, nogil=True)", "@njit")
    assert "@njit\n" in files["descartes_core.circuit_kernel"]
    return TWIN.replace("__FILES__", repr(files)).replace("__BURN_IN_MS__", repr(burn_in_ms))


def scores(source: str, drawn: dataset.Dataset, published: dataset.Dataset,
           backend: str) -> tuple[dict, dict]:
    """One training of `source` on the drawn data, its latents scored against each
    dataset's biovars by that dataset's evaluator (same inputs, same split)."""
    train = {"max_epochs": 1, "verify": False, "batch_size": 8, "time_budget_h": 0.05}
    on_drawn = Evaluator(drawn, backend=backend, train=train)
    on_published = Evaluator(published, backend=backend, train=train)
    out = on_drawn.train(source)
    assert out.ok, (out.error, out.log_tail[-3000:])
    return on_drawn.measure(out).scores, on_published.measure(out).scores


@pytest.fixture(scope="module")
def smoke_pair():
    """The smoke preset's data, drawn (the default) and published (jitter 0)."""
    spec = PRESETS["smoke"].data
    out = []
    for s in (spec, dataclasses.replace(spec, jitter=0.0)):
        path, _ = dataset.cached_or_simulated(s)
        out.append(dataset.load(path))
    assert out[0].inputs.tobytes() == out[1].inputs.tobytes()
    assert dataset.circuit_draw(out[0].meta)[0] > 0 and dataset.circuit_draw(out[1].meta)[0] == 0
    return out[0], out[1], spec.burn_in_ms


def test_a_carried_simulator_does_not_get_a_drawn_circuit_back(smoke_pair, monkeypatch):
    """Bubblewrap, the policy bypassed: the re-simulating candidate recovers nearly every
    variable of the published circuit, and far fewer of the secret draw's."""
    drawn, published, burn_in_ms = smoke_pair
    monkeypatch.setattr(policy, "check", lambda source, **_: policy.Verdict([], {}))
    on_drawn, on_published = scores(twin_source(burn_in_ms), drawn, published, "process")
    figures = {k: (on_drawn[k], on_published[k]) for k in ("recovered", "beyond_controls")}
    # measured: published 160 recovered, 159 beyond controls; over 12 fresh draws
    # 108–118 recovered and 91–110 beyond controls
    assert on_published["recovered"] >= 150, figures  # the candidate is a working twin
    assert on_drawn["recovered"] <= 0.85 * on_published["recovered"], figures
    assert on_drawn["beyond_controls"] <= 0.8 * on_published["beyond_controls"], figures
