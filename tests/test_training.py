"""Templates build and learn; every gradient strategy runs; failures become records."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from descartes_core.contract import calls_odeint_adjoint, load_candidate, template_sources
from descartes_core.rhythm import ar1_filter
from descartes_core.scoring import pearson_columns
from descartes_core.training import TrainConfig, evaluate

N, T = 10, 60
SPLIT = {"train": list(range(6)), "val": [6, 7], "test": [8, 9]}
FAST = TrainConfig(max_epochs=3, batch_size=3, segment_len=20, verify_steps=60,
                   verify_window=20, time_budget_h=0.05)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, 21)).astype(np.float32)
    y = ar1_filter(np.tanh(x[..., :20] @ rng.standard_normal((20, 20)) * 0.5), 0.7)
    return x, y.astype(np.float32)


@pytest.mark.parametrize("name", list(template_sources()))
def test_each_template_builds_and_a_few_steps_lower_the_loss(name, data):
    _, model_cls = load_candidate(template_sources()[name])
    torch.manual_seed(0)
    model = model_cls(21, 20, 32)
    x, y = (torch.as_tensor(a[:4, :30]) for a in data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        pred, latents, _ = model(x)
        loss = ((pred - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert pred.shape == (4, 30, 20) and latents.shape[:2] == (4, 30)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name, strategy, note", [
    ("T1", "direct", None),
    ("T2", "segmented", None),
    ("T8", "shooting", None),
    ("T1", "adjoint", "odeint_adjoint"),  # no ODE: falls back to direct and says so
    ("T7", "distillation", None),
])
def test_every_gradient_strategy_trains(name, strategy, note, data):
    src = template_sources()[name]
    _, model_cls = load_candidate(src)
    x, y = data
    ev = evaluate(model_cls, x, y, SPLIT, strategy, FAST, latent_dim=16, teacher=y * 0.8,
                  source=src)
    r = ev.record
    assert r.failure is None, r.failure_message
    assert r.epochs >= 1 and np.isfinite(r.val_loss)
    assert ev.predictions.shape == (N, T, 20)
    assert ev.latents.shape == ev.null_latents.shape[1:] == (N, T, 16)
    assert len(ev.null_latents) == FAST.null_seeds
    assert not np.array_equal(ev.latents, ev.null_latents[0])  # trained differs from the null
    assert not np.array_equal(ev.null_latents[0], ev.null_latents[1])  # another initialisation
    if note:
        assert r.strategy == "direct" and note in r.strategy_note
    else:
        assert r.strategy == strategy and r.strategy_note is None


def test_adjoint_really_runs_for_an_ode_model(data):
    src = template_sources()["T0"]
    _, model_cls = load_candidate(src)
    x, y = data
    cfg = TrainConfig(max_epochs=1, batch_size=6, verify=False, time_budget_h=0.05)
    ev = evaluate(model_cls, x[:, :20], y[:, :20], SPLIT, "adjoint", cfg, latent_dim=8,
                  source=src)
    assert ev.record.strategy == "adjoint" and ev.record.strategy_note is None
    assert ev.record.epochs == 1


def test_without_a_teacher_distillation_says_it_trained_direct(data):
    _, model_cls = load_candidate(template_sources()["T5"])
    ev = evaluate(model_cls, *data, SPLIT, "distillation", FAST, latent_dim=16)
    assert ev.record.strategy == "direct" and "teacher" in ev.record.strategy_note


class Deaf(nn.Module):
    """Cannot learn: its output never depends on a parameter that changes the loss."""

    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.n_outputs, self.latent_dim = n_outputs, latent_dim

    def forward(self, x, state=None):
        y = x.new_zeros(*x.shape[:2], self.n_outputs) + 0.0 * self.w
        return y, x.new_zeros(*x.shape[:2], self.latent_dim), None


def test_the_verifier_stops_a_model_that_cannot_learn(data):
    ev = evaluate(Deaf, *data, SPLIT, "direct", FAST, latent_dim=4)
    assert ev.record.failure == "verifier_failed"
    assert ev.record.epochs == 0
    assert "needs a 20% drop" in ev.record.failure_message
    assert ev.record.short_segment_corr is not None


class Exploding(Deaf):
    def forward(self, x, state=None):
        y, z, _ = super().forward(x)
        return y + self.w / self.w, z, None  # 0/0: NaN from the first step


class WrongShape(Deaf):
    def forward(self, x, state=None):
        y, z, _ = super().forward(x)
        return y[..., :3], z, None


@pytest.mark.parametrize("model_cls, kind", [(Exploding, "nan"), (WrongShape, "shape")])
def test_failures_are_recorded_not_raised(model_cls, kind, data):
    ev = evaluate(model_cls, *data, SPLIT, "direct", FAST, latent_dim=4)
    assert ev.record.failure == kind and ev.record.stopped_by == "failure"


def test_same_seed_same_training_on_cpu(data):
    _, model_cls = load_candidate(template_sources()["T2"])
    runs = [evaluate(model_cls, *data, SPLIT, "segmented", FAST, latent_dim=16)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predictions, runs[1].predictions)
    assert runs[0].record.history[-1]["val"] == runs[1].record.history[-1]["val"]
    other = evaluate(model_cls, *data, SPLIT, "segmented",
                     TrainConfig(**{**FAST.__dict__, "seed": 1}), latent_dim=16)
    assert not np.array_equal(other.predictions, runs[0].predictions)


# the adjoint is read from the calls, not from a mention ------------------------------------
@pytest.mark.parametrize("src, calls", [
    ("from torchdiffeq import odeint_adjoint\nz = odeint_adjoint(f, z0, t)", True),
    ("from torchdiffeq import odeint_adjoint as oa\nz = oa(f, z0, t)[1:]", True),
    ("import torchdiffeq\nz = torchdiffeq.odeint_adjoint(f, z0, t)", True),
    ("import torchdiffeq as td\ndef g():\n    return td.odeint_adjoint(f, z0, t)", True),
    ("from torchdiffeq import odeint\n# odeint_adjoint(f, z0, t) was too slow\n"
     "z = odeint(f, z0, t)", False),
    ('NOTE = "we call odeint_adjoint(f, z0, t)"', False),
    ("from torchdiffeq import odeint_adjoint", False),  # imported, never called
    ("from torchdiffeq import odeint as odeint_adjoint\nz = odeint_adjoint(f, z0, t)", False),
    ("from torchdiffeq import odeint as oa\nz = oa(f, z0, t)", False),
    ("odeint_adjoint(", False),  # does not parse
])
def test_calls_odeint_adjoint_reads_the_ast(src, calls):
    assert calls_odeint_adjoint(src) is calls


def test_a_mention_of_odeint_adjoint_in_a_comment_or_string_trains_direct(data):
    src = template_sources()["T1"].replace(
        "UNFOLDS = 3\n", 'UNFOLDS = 3  # odeint_adjoint(f, z, t) would be slower\n'
                         'SOLVER_NOTE = "not odeint_adjoint(...)"\n')
    assert src.count("odeint_adjoint") == 2 and not calls_odeint_adjoint(src)
    _, model_cls = load_candidate(src)
    cfg = TrainConfig(max_epochs=1, batch_size=6, verify=False, time_budget_h=0.05)
    ev = evaluate(model_cls, *data, SPLIT, "adjoint", cfg, latent_dim=8, source=src)
    assert ev.record.failure is None, ev.record.failure_message
    assert ev.record.strategy == "direct" and "odeint_adjoint" in ev.record.strategy_note


def test_an_aliased_odeint_adjoint_call_trains_adjoint(data):
    src = (template_sources()["T0"]
           .replace("from torchdiffeq import odeint_adjoint",
                    "from torchdiffeq import odeint_adjoint as solve")
           .replace("z = odeint_adjoint(", "z = solve("))
    assert "odeint_adjoint(" not in src and calls_odeint_adjoint(src)
    _, model_cls = load_candidate(src)
    x, y = data
    cfg = TrainConfig(max_epochs=1, batch_size=6, verify=False, time_budget_h=0.05)
    ev = evaluate(model_cls, x[:, :10], y[:, :10], SPLIT, "adjoint", cfg, latent_dim=8,
                  source=src)
    assert ev.record.failure is None, ev.record.failure_message
    assert ev.record.strategy == "adjoint" and ev.record.strategy_note is None


# distillation fits the teacher it is given -------------------------------------------------
class TinyGRU(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.gru = nn.GRU(n_inputs, latent_dim, batch_first=True)
        self.out = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        z, h = self.gru(x, None if state is None else state[None].contiguous())
        return self.out(z), z, h[0]


def _corr(pred, ref, rows):
    return float(pearson_columns(pred[rows].reshape(-1, 20).astype(np.float64),
                                 ref[rows].reshape(-1, 20).astype(np.float64)).mean())


def test_distillation_receives_and_fits_the_teacher():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((24, 30, 21)).astype(np.float32)
    y = ar1_filter(np.tanh(x[..., :20] @ rng.standard_normal((20, 20)) * 0.5), 0.7)
    # the teacher: another function of the inputs, unrelated to the targets
    teacher = np.tanh(x[..., 1:] @ rng.standard_normal((20, 20)) * 0.5).astype(np.float32)
    split = {"train": list(range(16)), "val": [16, 17, 18, 19], "test": [20, 21, 22, 23]}
    rows = split["train"]
    assert abs(_corr(teacher, y, rows)) < 0.1
    cfg = TrainConfig(max_epochs=8, batch_size=4, lr=1e-2, distill_fraction=1.0,
                      verify=False, time_budget_h=0.05)
    ev = evaluate(TinyGRU, x, y, split, "distillation", cfg, latent_dim=16, teacher=teacher)
    r = ev.record
    assert r.failure is None, r.failure_message
    assert r.strategy == "distillation" and r.strategy_note is None
    assert r.epochs == 8  # no early stopping while the teacher is fitted (val loss rises)
    to_teacher, to_targets = _corr(ev.predictions, teacher, rows), _corr(ev.predictions, y, rows)
    assert to_teacher > 0.6 and to_teacher > to_targets + 0.5, (to_teacher, to_targets)

    direct = evaluate(TinyGRU, x, y, split, "distillation", cfg, latent_dim=16, teacher=None)
    assert direct.record.strategy == "direct" and "teacher" in direct.record.strategy_note
    assert _corr(direct.predictions, y, rows) > _corr(direct.predictions, teacher, rows) + 0.3
