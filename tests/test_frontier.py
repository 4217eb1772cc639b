"""What the frontier work rests on: T9, declared widths, spike counts that stay hidden,
the gradient guard."""

import numpy as np
import pytest
import torch

from agent.evaluator import Evaluator
from descartes_core import contract, dataset, stiff, training
from descartes_core.dataset import SimulationSpec
from sandbox import policy, runner

T9 = contract.template_sources()["T9"]
SENTINEL = 7.0


@pytest.fixture(scope="module")
def ds():
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=16, duration_ms=150,
                                                         burn_in_ms=100.0))
    return dataset.load(path)


def test_t9_passes_the_policy_and_the_shape_check_at_its_declared_width(backend):
    verdict = policy.check(T9)
    assert verdict.accepted, verdict.violations
    assert verdict.properties["loss"] == "event_multiscale"
    assert contract.source_width(T9) == 220
    out = runner.check(T9, latent_dim=contract.source_width(T9), backend=backend)
    assert out.ok, out.error
    assert out.check["latent_dim"] == 220 and out.check["grad_fraction"] > 0.9


@pytest.mark.parametrize("declaration", ["LATENT_DIM = 321", "LATENT_DIM = 0",
                                         "LATENT_DIM = 64.0", "LATENT_DIM = 2 * 100",
                                         "LATENT_DIM = True"])
def test_a_width_beyond_the_cap_or_not_a_plain_int_is_refused(declaration):
    source = T9.replace("LATENT_DIM = 220", declaration)
    verdict = policy.check(source)
    assert not verdict.accepted
    assert any(v.rule == "width" and "320" in v.message for v in verdict.violations)
    assert contract.source_width(source, 64) == 64  # never built at an undeclared width


def test_the_random_control_is_built_at_the_candidates_width(ds):
    ev = Evaluator(ds, backend="process")
    assert ev.width(T9) == 220 and ev.width(contract.template_sources()["T5"]) == 64
    n, t = ds.inputs.shape[:2]
    rng = np.random.default_rng(0)
    steps = -(-t // 5)
    out = runner.Outcome(True, "evaluate", "process", record={"strategy": "segmented"},
                         arrays={"predictions": ds.outputs + rng.normal(0, 1, ds.outputs.shape)
                                 .astype(np.float32),
                                 "latents": rng.normal(size=(n, steps, 220)).astype(np.float32),
                                 "null_latents": rng.normal(size=(3, n, steps, 220))
                                 .astype(np.float32)})
    result = ev.measure(out)
    assert result.status == "scored", result.failure_message
    assert set(ev._random) == {220}
    assert result.scores["latent_dim"] == 220
    assert result.scores["events"]["bursts_true"] >= 0  # the event scores ride along


def _sent(monkeypatch) -> list[dict]:
    """What would travel into the sandbox: the job's arrays, captured at the seam."""
    seen = []

    def capture(task, source, config, arrays=None, *a, **kw):
        seen.append({k: np.array(v) for k, v in (arrays or {}).items()})
        return runner.Outcome(False, task, "process", {"kind": "runtime", "message": "x"})

    monkeypatch.setattr(runner, "run_job", capture)
    return seen


def test_spike_counts_of_selection_and_test_trials_never_reach_the_sandbox(ds, monkeypatch):
    hidden = np.concatenate([ds.split("selection"), ds.split("test")])
    ds.spikes = ds.spikes.copy()
    ds.spikes[hidden] = SENTINEL  # where a breach would show
    ev = Evaluator(ds, backend="process")
    seen = _sent(monkeypatch)
    ev.train(T9.replace('"loss": "event_multiscale"', '"loss": "poisson_counts"'))
    ev.train(T9.replace('"loss": "event_multiscale"', '"loss": "mse_rate"'))
    counts = seen[0]["counts"]
    assert not (counts == SENTINEL).any() and not counts[hidden].any()
    seen_rows = np.concatenate([ds.split("train"), ds.split("val")])
    np.testing.assert_array_equal(counts[seen_rows], ds.spikes[seen_rows])
    assert "counts" not in seen[1]  # an mse_rate candidate gets no counts at all
    # and the runner itself zeroes every row outside the split, whatever it is handed
    runner.evaluate(T9, ds.inputs, ds.outputs, ev.split, counts=ds.spikes.astype(np.float32),
                    teacher=ds.outputs)
    for key in ("counts", "targets", "teacher"):
        assert not seen[2][key][hidden].any()


def test_a_count_loss_on_data_without_spikes_trains_mse_rate_and_says_so(ds):
    user = dataset.Dataset(ds.inputs, ds.outputs, ds.biovars, ds.meta, None)
    counts, why = user.training_counts()
    assert counts is None and "spikes.npy" in why
    props, model = contract.load_candidate(contract.template_sources()["T5"].replace(
        '"solver": "euler",', '"solver": "euler",\n    "loss": "poisson_counts",'))
    assert props["loss"] == "poisson_counts"
    cfg = training.TrainConfig(max_epochs=1, verify=False, null_seeds=1, batch_size=8)
    ev = training.evaluate(model, ds.inputs, ds.training_outputs(),
                           {k: ds.meta["split"][k] for k in ("train", "val")}, "direct", cfg,
                           loss=props["loss"], counts=counts)
    assert ev.record.loss == "mse_rate" and "count loss" in ev.record.loss_note
    assert ev.record.failure is None


def test_the_guard_bounds_a_positive_feedback_loops_state_gradient():
    def loop(z0):
        z = z0
        for t in range(100):
            z = stiff.guard(1.5 * z, t)
        return z.sum()

    try:
        stiff.configure(None)  # a training in this process may have set a bound
        z0 = torch.ones(2, 3, requires_grad=True)
        loop(z0).backward()
        assert z0.grad.abs().min() > 1e15  # 1.5^100: what an unguarded stiff loop does
        stiff.configure(1.0, every=10)
        z0 = torch.ones(2, 3, requires_grad=True)
        loop(z0).backward()
        assert torch.isfinite(z0.grad).all()
        assert z0.grad.flatten(1).norm(dim=1).max() <= 1.5 ** 10 + 1e-6  # one spacing's growth
    finally:
        stiff.configure(None)


FAST_STEP = '''
import torch
import torch.nn as nn

from descartes_core.stiff import fast_step, guard

PROPERTIES = {"family": "tiny_loop", "time_handling": "custom", "gradient_strategy": "direct",
              "latent_structure": "unconstrained", "input_coupling": "additive",
              "solver": "euler"}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.inp = nn.Linear(n_inputs, latent_dim)
        self.rec = nn.Linear(latent_dim, latent_dim)
        self.readout = nn.Linear(latent_dim, n_outputs)

    def step(self, z, u):
        return torch.tanh(self.rec(z) + u)

    def forward(self, x, state=None):
        z = x.new_zeros(x.shape[0], self.rec.in_features) if state is None else state
        u = self.inp(x)
        step, out = fast_step(self.step), []
        for t in range(x.shape[1]):
            z = guard(step(z, u[:, t]), t)
            out.append(z)
        z = torch.stack(out, 1)
        return self.readout(z), z, z[:, -1]
'''


def test_a_step_is_compiled_in_the_process_sandbox_and_runs_eager_under_docker(ds, backend):
    split = {k: ds.meta["split"][k] for k in ("train", "val")}
    train = {"max_epochs": 1, "verify": False, "null_seeds": 1, "time_budget_h": 0.2}
    out = runner.evaluate(FAST_STEP, ds.inputs, ds.training_outputs(), split, latent_dim=8,
                          train=train, backend=backend)
    assert out.ok, out.error
    if backend == "process":  # the host's compiler and headers are in reach
        assert out.record["compile"] == "compiled"
    else:  # the image has no C++ compiler (nor could compiled code load from its noexec
        # tmpfs): it runs eager, and says so
        assert out.record["compile"].startswith("eager: compiling failed")
    short = runner.evaluate(FAST_STEP, ds.inputs, ds.training_outputs(), split, latent_dim=8,
                            train={**train, "time_budget_h": 0.01}, backend="process")
    assert short.ok and short.record["compile"] is None  # a short budget never compiles
