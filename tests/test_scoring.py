"""Probes, CCA and the controls on planted signals with a known answer."""

import numpy as np
import pytest

from descartes_core import laguerre, rhythm, scoring, variables
from descartes_core.contract import property_errors, validate_properties

N, T = 40, 200


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # smooth, independent "biological" signals: AR(1) noise with a mix of time constants
    bio = np.concatenate([rhythm.ar1_filter(rng.standard_normal((N, T, 1)), a)
                          for a in rng.uniform(0.5, 0.98, 160)], axis=-1)
    meta = {
        "variables": variables.describe(),
        "split": {"train": list(range(28)), "val": list(range(28, 34)),
                  "test": list(range(34, 40))},
    }
    outputs = bio[..., :20] ** 2
    return bio.astype(np.float32), outputs.astype(np.float32), meta, rng


def test_a_noisy_linear_mix_of_the_variables_recovers_nearly_all(data):
    bio, outputs, meta, rng = data
    mix = rng.standard_normal((160, 192))
    latents = bio @ mix + 0.5 * rng.standard_normal((N, T, 192))
    s = scoring.score(outputs, latents, outputs, bio, meta, stride=1)
    assert s.recovered >= 155
    assert sum(s.by_category.values()) == sum(s.by_timescale.values()) == s.recovered
    assert s.by_category["synaptic"] >= 38
    assert s.cca > 0.9
    assert s.spike_corr == pytest.approx(1.0)


def test_independent_noise_recovers_none(data):
    bio, outputs, meta, rng = data
    latents = rng.standard_normal((N, T, 64))
    s = scoring.score(latents[..., :20], latents, outputs, bio, meta, stride=1)
    assert s.recovered == 0
    assert abs(s.cca) < 0.15
    assert abs(s.spike_corr) < 0.1


def test_a_subset_of_variables_is_recovered_exactly_and_the_controls_subtract(data):
    bio, outputs, meta, rng = data
    latents = bio[..., :30] + 0.1 * rng.standard_normal((N, T, 30))
    null = bio[..., :10] + 0.1 * rng.standard_normal((N, T, 10))
    input_r = np.zeros(160)
    input_r[20:30] = 0.9  # pretend the inputs alone recover variables 20–29
    s = scoring.score(outputs, latents, outputs, bio, meta, stride=1,
                      null_latents=null, input_r=input_r)
    assert s.recovered_vector[:30] == [True] * 30 and not any(s.recovered_vector[30:])
    assert s.null_recovered == 10 and s.above_null == 20
    assert s.input_recovered == 10 and s.beyond_inputs == 20
    assert s.latent_dim == 30
    assert s.by_category["tc_gating"] == 30


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
    assert validate_properties(GOOD) == GOOD
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
    vl, r = baselines.input_baseline(ds)
    assert r.shape == (160,) and vl.latents.shape == (8, 150, 21 * baselines.N_FUNCS)
    monkeypatch.setattr(baselines, "fit_volterra_laguerre",
                        lambda *_: pytest.fail("refitted despite the cache"))
    vl2, r2 = baselines.input_baseline(ds)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_allclose(vl.predictions, vl2.predictions, rtol=1e-5)


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
