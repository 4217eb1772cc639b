"""The count losses on hand-made spike trains: where a committed burst beats a hedge.

One cell, 400 ms, two true bursts of four spikes at 2-ms intervals (at 100 and 260 ms).
The hedge is what a model trained on the smoothed rate predicts under timing
uncertainty: the same four spikes per burst spread as a Gaussian of SD 25 ms. A
prediction λ (spikes per bin) is handed to a loss as the output y = logit(λ) with offset
0, so the loss's soft cap (λ = σ(y + offset)) gives back exactly λ.
"""

import numpy as np
import pytest
import torch

from descartes_core import events, losses, rhythm

T = 400
STARTS = (100, 260)


def burst(starts=STARTS, lag=0, level=1.0, floor=0.0):
    lam = torch.full((1, T, 1), floor)
    for s in starts:
        lam[0, s + lag : s + lag + 8 : 2, 0] = level
    return lam


def box(width, level, starts=STARTS):
    lam = torch.full((1, T, 1), 0.002)
    for s in starts:
        lam[0, s : s + width, 0] = level
    return lam


def hedge(sd=25.0):
    k = torch.arange(T, dtype=torch.float32)
    lam = torch.full((1, T, 1), 0.002)
    for s in STARTS:
        g = torch.exp(-0.5 * ((k - s - 3) / sd) ** 2)
        lam[0, :, 0] += 4 * g / g.sum()
    return lam


TRUTH = burst()
ZERO = torch.zeros(1)


def mse(lam):  # what mse_rate fits: the smoothed rate (z-scoring changes no ranking)
    return float((losses.causal_filter(lam, 10.0, 100.0)
                  - losses.causal_filter(TRUTH, 10.0, 100.0)).pow(2).mean())


def poisson(lam):
    return float(losses.poisson_nll(torch.logit(lam), TRUTH, ZERO))


def event(lam):
    return float(losses.event_distance(torch.logit(lam), TRUTH, ZERO,
                                       losses.scale_norms(TRUTH)))


def test_a_burst_in_the_right_bins_but_too_large_beats_a_hedge_under_the_likelihood():
    committed = box(8, 0.9)  # 7.2 expected spikes where 4 fell: the place right, the size not
    assert poisson(committed) < poisson(hedge())
    assert event(committed) < event(hedge())
    assert mse(committed) > mse(hedge())  # the smoothed rate's error prefers the hedge


def test_a_burst_of_the_right_size_10_ms_late_beats_a_hedge_under_the_event_loss():
    late = burst(lag=10, level=0.9, floor=0.002)
    assert event(late) < event(hedge())
    assert mse(late) > mse(hedge())
    # The likelihood is exact about timing per 1-ms bin: a 10-ms miss loses to the hedge.
    # That is why the event loss exists beside it.
    assert poisson(late) > poisson(hedge())


def test_the_truth_is_each_loss_minimum_among_these():
    exact = burst(level=0.999, floor=1e-4)
    for loss in (poisson, event, mse):
        assert loss(exact) < min(loss(box(8, 0.9)), loss(hedge()), loss(burst(lag=10)
                                                                        .clamp(1e-4, 0.999)))


def test_the_causal_filter_is_the_outputs_kernel():
    counts = np.random.default_rng(0).poisson(0.05, (2, 300, 3)).astype(np.float64)
    want = rhythm.ar1_filter(counts, np.exp(-1 / 10.0), 100.0)
    got = losses.causal_filter(torch.as_tensor(counts), 10.0, 100.0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-8)
    # and scoring's inverse gives back the counts from the rate
    np.testing.assert_allclose(events.implied_counts(want), counts, atol=1e-9)


def test_the_soft_cap_holds_an_exploding_output_finite_with_a_gradient():
    y = torch.full((1, 50, 1), 1e4, requires_grad=True)
    loss = losses.poisson_nll(y, torch.zeros(1, 50, 1), ZERO)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(1.0, abs=1e-6)  # λ ≤ 1
    assert torch.isfinite(y.grad).all()
