"""Probes, CCA, the controls and the intervals on planted signals with a known answer."""

import numpy as np
import pytest

from descartes_core import laguerre, rhythm, scoring, variables
from descartes_core.contract import property_errors, validate_properties
from descartes_core.scoring import Controls

N, T = 48, 200
SPLIT = {"train": list(range(28)), "val": list(range(28, 34)),
         "selection": list(range(34, 41)), "test": list(range(41, 48))}
VARIABLES = variables.describe()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # smooth, independent "biological" signals: AR(1) noise with a mix of time constants
    bio = np.concatenate([rhythm.ar1_filter(rng.standard_normal((N, T, 1)), a)
                          for a in rng.uniform(0.5, 0.98, 160)], axis=-1)
    outputs = bio[..., :20] ** 2
    return bio.astype(np.float32), outputs.astype(np.float32), rng


NO_CONTROLS = Controls()


def _scores(pred, latents, outputs, bio, controls=NO_CONTROLS, on="selection", margin=0.05):
    m = scoring.measure(pred, latents[:, ::scoring.STRIDE], outputs, bio, SPLIT, controls)
    return m.scores(VARIABLES, on, margin=margin)


def _fit(latents, bio):
    return scoring.probe(latents, bio, SPLIT, stride=scoring.STRIDE)


def test_moments_give_pearson_r_over_concatenated_trials(data):
    bio, _, rng = data
    a, b = bio[:, :, :5], bio[:, :, :5] + rng.standard_normal((N, T, 5))
    want = scoring.pearson_columns(a.reshape(-1, 5).astype(float), b.reshape(-1, 5))
    np.testing.assert_allclose(scoring.r_of(scoring.moments(a, b).sum(0)), want, atol=1e-9)
    const = np.ones((N, T, 1))
    assert scoring.r_of(scoring.moments(const, b[..., :1]).sum(0)) == 0.0


def test_a_noisy_linear_mix_of_the_variables_recovers_nearly_all(data):
    bio, outputs, rng = data
    mix = rng.standard_normal((160, 192))
    latents = bio @ mix + 0.5 * rng.standard_normal((N, T, 192))
    s = _scores(outputs, latents, outputs, bio)
    assert s.on == "selection" and s.recovered >= 150
    assert sum(s.by_category.values()) == sum(s.by_timescale.values()) == s.recovered
    assert s.cca > 0.9
    assert s.spike_corr == pytest.approx(1.0)


def test_self_readout_tells_generating_states_from_a_side_channel(data):
    bio, outputs, rng = data
    latents = bio[..., :40]
    made = latents @ rng.standard_normal((40, 20))  # outputs a linear readout of the states
    assert _scores(made, latents, outputs, bio).self_readout > 0.95
    side = rng.standard_normal((N, T, 20))  # outputs that the latents know nothing of
    assert abs(_scores(side, latents, outputs, bio).self_readout) < 0.1


def test_independent_noise_recovers_none(data):
    bio, outputs, rng = data
    latents = rng.standard_normal((N, T, 64))
    s = _scores(latents[..., :20], latents, outputs, bio)
    assert s.recovered == 0 and s.beyond_controls == 0
    assert abs(s.cca) < 0.2
    assert abs(s.spike_corr) < 0.1


def test_each_control_takes_away_what_it_recovers_itself(data):
    bio, outputs, rng = data

    def noisy(cols):
        return bio[..., cols] + 0.1 * rng.standard_normal((N, T, len(cols)))

    latents = noisy(list(range(40)))  # carries variables 0–39 (their own signal)
    null = (_fit(noisy(list(range(10))), bio), _fit(noisy(list(range(5, 12))), bio))
    random = _fit(noisy(list(range(12, 20))), bio)
    inputs = _fit(noisy(list(range(20, 30))), bio)  # "the inputs alone" recover 20–29
    s = _scores(outputs, latents, outputs, bio, Controls(null, random, inputs))
    assert s.recovered_vector[:40] == [True] * 40 and not any(s.recovered_vector[40:])
    assert s.null_seeds == 2 and s.null_recovered == 12 and s.above_null == 28  # best seed
    assert s.random_recovered == 8 and s.beyond_random == 32
    assert s.input_recovered == 10 and s.beyond_inputs == 30
    assert s.beyond_controls == 10  # only 30–39 are beyond every control
    assert s.latent_dim == 40 and s.by_category["tc_gating"] == 40


def test_a_filtered_input_is_not_beyond_controls_and_a_biovar_signal_is(data):
    bio, outputs, rng = data
    drive = rng.standard_normal((N, T, 21))
    filtered = laguerre.features(drive, 0.9, 4)  # what a filter bank of the inputs holds
    planted = bio.copy()
    planted[..., :20] = filtered[..., :20]  # twenty "variables" that are filtered inputs
    inputs = _fit(laguerre.features(drive, 0.9, 4), planted)
    from_inputs = filtered + 0.1 * rng.standard_normal(filtered.shape)
    s = _scores(outputs, from_inputs, outputs, planted, Controls(inputs=inputs))
    assert s.recovered >= 20 and s.beyond_controls == 0
    own = np.concatenate([from_inputs, planted[..., 20:40] + 0.1 * rng.standard_normal(
        (N, T, 20))], axis=-1)
    s = _scores(outputs, own, outputs, planted, Controls(inputs=inputs))
    assert s.beyond_controls == 20 and s.beyond_inputs == 20


def test_the_margin_asks_for_more_than_a_tie_with_a_control(data):
    bio, outputs, rng = data
    latents = bio[..., :20] + 0.3 * rng.standard_normal((N, T, 20))
    same = _fit(latents, bio)  # a control exactly as good as the model
    s = _scores(outputs, latents, outputs, bio, Controls(random=same), margin=0.05)
    assert s.recovered == 20 and s.beyond_random == 0 and s.beyond_controls == 0
    s = _scores(outputs, latents, outputs, bio, Controls(random=same), margin=-0.01)
    assert s.beyond_controls == 20  # what the margin is for


def test_bootstrap_intervals_cover_a_planted_effect(data):
    bio, outputs, rng = data
    sd = outputs.std(axis=(0, 1))  # per channel: r = 1/sqrt(2) on every one
    pred = outputs + sd * rng.standard_normal(outputs.shape)
    strong = bio[..., :30] + 0.2 * rng.standard_normal((N, T, 30))
    s = _scores(pred, strong, outputs, bio)
    lo, hi = s.intervals["spike_corr"]
    assert lo < 2 ** -0.5 < hi and hi - lo < 0.2
    assert s.intervals["recovered"][0] <= 30 <= s.intervals["recovered"][1]
    assert len(s.replicates["recovered"]) == scoring.BOOTSTRAP
    # the resamples are fixed: two models on the same trials are paired
    np.testing.assert_array_equal(scoring.resamples(7), scoring.resamples(7))
    s2 = _scores(pred, strong, outputs, bio)
    assert s2.replicates == s.replicates


def test_the_test_split_is_scored_only_when_asked(data):
    bio, outputs, rng = data
    latents = bio[..., :30] + 0.5 * rng.standard_normal((N, T, 30))
    m = scoring.measure(outputs, latents[:, ::scoring.STRIDE], outputs, bio, SPLIT, Controls(),
                        on=("selection",))
    assert set(m.probes.on) == {"selection"}
    with pytest.raises(KeyError):
        m.scores(VARIABLES, "test")


def test_laguerre_bank_matches_the_closed_form_and_is_orthonormal():
    from math import comb
    a, n_funcs, lags = 0.9, 5, 400
    b = laguerre.basis(a, n_funcs, lags)

    def closed(j, m):
        return a ** ((m - j) / 2) * np.sqrt(1 - a) * sum(
            (-1) ** k * comb(m, k) * comb(j, k) * a ** (j - k) * (1 - a) ** k
            for k in range(j + 1))

    want = np.array([[closed(j, m) for m in range(lags)] for j in range(n_funcs)])
    np.testing.assert_allclose(b, want, atol=1e-12)
    np.testing.assert_allclose(b @ b.T, np.eye(n_funcs), atol=1e-9)


GOOD = {"family": "ltc", "time_handling": "ltc", "gradient_strategy": "segmented",
        "latent_structure": "biophysical", "input_coupling": "gated", "solver": "euler"}


def test_valid_properties_pass_and_unknown_values_list_the_valid_ones():
    assert validate_properties(GOOD) == {**GOOD, "loss": "mse_rate"}  # the axis' default
    assert validate_properties({**GOOD, "loss": "poisson_counts"})["loss"] == "poisson_counts"
    assert any("'loss'" in e and "event_multiscale" in e
               for e in property_errors({**GOOD, "loss": "hinge"}))
    errors = property_errors({**GOOD, "solver": "rk45", "colour": "red"})
    assert any("'solver'" in e and "rk45" in e and "dopri5" in e and "tsit5" in e
               for e in errors)
    assert any("unknown key 'colour'" in e for e in errors)
    assert property_errors({"family": "x"})[0].startswith("PROPERTIES is missing")
    with pytest.raises(ValueError, match="time_handling"):
        validate_properties({**GOOD, "time_handling": "transformer"})


def test_input_baseline_is_cached_per_dataset(monkeypatch):
    from descartes_core import baselines, dataset
    from descartes_core.dataset import SimulationSpec

    ds = dataset.simulate_dataset(SimulationSpec(n_trials=8, duration_ms=150, seed=2,
                                                 burn_in_ms=100.0))
    vl, fit = baselines.input_baseline(ds)
    assert fit.r("selection").shape == fit.r("test").shape == (160,)
    assert vl.latents.shape == (8, 150, 21 * baselines.N_FUNCS)
    monkeypatch.setattr(baselines, "fit_volterra_laguerre",
                        lambda *_: pytest.fail("refitted despite the cache"))
    vl2, fit2 = baselines.input_baseline(ds)
    for on in ("selection", "test"):
        np.testing.assert_array_equal(fit.on[on], fit2.on[on])
    np.testing.assert_allclose(vl.predictions, vl2.predictions, rtol=1e-5)
    # the richer bank: several poles and the fitted model's second-order terms
    f = baselines.input_features(ds, vl)
    assert f.shape == (8, 30, 21 * baselines.N_FUNCS * len({*baselines.INPUT_ALPHAS, vl.alpha})
                       + 5 * 20)


def test_the_trusted_control_is_seeded_and_remembers_its_inputs():
    from descartes_core.controls import random_network_latents

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 400, 21)).astype(np.float32)
    a = random_network_latents(x, 16, dt_ms=1.0, seed=0)
    assert a.shape == (3, 400, 16) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, random_network_latents(x, 16, dt_ms=1.0, seed=0))
    assert not np.allclose(a, random_network_latents(x, 16, dt_ms=1.0, seed=1))
    # slow units integrate: a pulse at t=100 still shows 50 steps later
    pulse = np.zeros((1, 400, 21), np.float32)
    pulse[0, 100:105] = 5.0
    z = random_network_latents(pulse, 16, dt_ms=1.0) - random_network_latents(
        np.zeros_like(pulse), 16, dt_ms=1.0)
    assert np.abs(z[0, 150]).max() > 0.05


def test_the_seams_agree_on_stride_and_objectives():
    from agent.config import OBJECTIVES
    from sandbox.protocol import LATENT_STRIDE

    assert LATENT_STRIDE == scoring.STRIDE  # the sandbox returns the steps the probes read
    assert set(OBJECTIVES) == set(scoring.COUNTS)
