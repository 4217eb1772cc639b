"""Network checks of the spec's Decisions 3–5, each statistic over several seeds.

Estimator (descartes_core.rhythm): TC spike counts in 1-ms bins, Gaussian σ = 8 ms,
Hann-windowed periodogram of the population rate over 1000–2000 ms. A seed sets
both the circuit's heterogeneity and the trial's drive. Thresholds come from the
distribution over seeds measured with this implementation, with margin; the
measured values are in the comments.
"""

import dataclasses

import numpy as np
import pytest

from descartes_core import rhythm, trials
from descartes_core.circuit import CircuitParams, simulate

SEEDS = range(8)
T = 2000
SWEEP_GAINS = (0.0, 0.25, 0.5, 1.0, 2.0)


def _ou(rng, sd=0.15, tau=30.0):
    a = np.exp(-1.0 / tau)
    return rhythm.ar1_filter(rng.standard_normal((T, 20)) * sd * np.sqrt(1 - a * a), a)


def _trial(rng, gain, drive, kick=True, noise=False):
    x = np.zeros((T, 21))
    x[:, :20] = drive * rng.uniform(0.9, 1.1, 20)
    if noise:
        x[:, :20] += _ou(rng)
    if kick:
        x[100:300, 8:12] = -0.2  # hyperpolarising kick to TC 8–11
    x[:, 20] = gain
    return x


def _run(conditions, params=lambda p: p):
    """conditions: (gain, drive, kick, noise) each; spikes and inputs, (seeds, conditions, T, …)."""
    spikes, inputs = [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        inputs.append(np.stack([_trial(rng, *c) for c in conditions]))
        spikes.append(simulate(inputs[-1], params(CircuitParams(circuit_seed=seed))).tc_spikes)
    return np.stack(spikes), np.stack(inputs)


@pytest.fixture(scope="module")
def runs():
    """Every condition of this file, for every seed."""
    conditions = {
        "oscillation": (1.0, 0.0, True, False),
        "relay": (0.0, 0.6, False, True),
        "suppressed": (2.0, 0.6, False, True),
        **{f"sweep{g}@0.6": (g, 0.6, True, False) for g in SWEEP_GAINS},
        **{f"sweep{g}@0.9": (g, 0.9, True, False) for g in SWEEP_GAINS},
    }
    names = list(conditions)
    spikes, inputs = _run([conditions[n] for n in names])
    by_name = {n: spikes[:, i] for i, n in enumerate(names)}
    by_name["relay_inputs"] = inputs[:, names.index("relay")]
    bic = lambda p: dataclasses.replace(p, g_gabaa_tc=0.0, g_gabaa_re=0.0)  # noqa: E731
    by_name["bicuculline"] = _run([conditions["oscillation"]], bic)[0][:, 0]
    return by_name


def test_oscillation_without_drive_is_a_sustained_4_to_10_hz_rhythm(runs):
    sp = runs["oscillation"]
    freq = rhythm.dominant_frequency(sp)  # measured 6, 6, 8, 7, 7, 7, 8, 11
    share = rhythm.band_share(sp)  # measured 0.55–0.83
    assert 5.0 <= np.median(freq) <= 9.0
    assert np.mean((freq >= 4) & (freq <= 10)) >= 0.75
    assert np.median(share) > 0.6 and share.min() > 0.4
    assert np.all(sp[:, 1500:].sum(axis=(1, 2)) > 0)  # still going in the last 500 ms
    # Decision 5: ≥ 50 % of TC cells fire in ≥ 3 cycles of the rhythm (after the kick)
    fractions = []
    for s, f in zip(sp, freq, strict=True):
        period = round(1000 / f)
        n = (T - 300) // period
        cycles = s[300 : 300 + n * period].reshape(n, period, 20).sum(axis=1)
        fractions.append(np.mean((cycles > 0).sum(axis=0) >= 3))
    assert min(fractions) >= 0.5, fractions


def test_relay_each_tc_cell_follows_its_own_drive(runs):
    own, other = [], []
    for sp, x in zip(runs["relay"], runs["relay_inputs"], strict=True):
        rate = rhythm.smoothed_rate(sp)[500:]
        c = np.corrcoef(rate.T, x[500:, :20].T)[:20, 20:]
        own.append(np.diag(c).mean())
        other.append(c[~np.eye(20, dtype=bool)].mean())
    assert rhythm.mean_rate(runs["relay"]).min() > 15.0  # tonic firing, measured ≈ 27 Hz
    assert np.median(own) > 0.5 and min(own) > 0.4  # measured ≈ 0.62
    assert max(np.abs(other)) < 0.1  # measured ≈ 0.00


def test_strong_gain_suppresses_tc_output(runs):
    ratio = rhythm.mean_rate(runs["suppressed"]) / rhythm.mean_rate(runs["relay"])
    assert np.all(ratio < 0.5)  # measured ≈ 0.06


def test_bicuculline_slows_the_rhythm_to_2_to_5_hz(runs):
    freq = rhythm.dominant_frequency(runs["bicuculline"])  # measured 3 Hz for every seed
    assert np.all((freq >= 2) & (freq <= 5))
    assert np.median(rhythm.band_share(runs["bicuculline"], band=(1, 6))) > 0.5


def test_gain_sweep_fixes_the_regime_boundary_and_its_dependence_on_drive(runs):
    share = {g: np.median(rhythm.band_share(runs[f"sweep{g}@0.6"])) for g in SWEEP_GAINS}
    rate = {g: np.median(rhythm.mean_rate(runs[f"sweep{g}@0.6"])) for g in SWEEP_GAINS}
    rate_09 = {g: np.median(rhythm.mean_rate(runs[f"sweep{g}@0.9"])) for g in SWEEP_GAINS}
    # 0.6 nA: relay up to G = 0.5 (measured share ≤ 0.15, 28 → 22 Hz) …
    assert share[0.0] < 0.1 and share[0.25] < 0.2
    assert rate[0.0] > 15.0 and rate[0.5] > 10.0
    # … rhythmic and suppressed from G = 1 (measured share 0.68 / 0.68, 3.5 / 1.3 Hz)
    assert share[1.0] > 0.4 and share[2.0] > 0.4
    assert rate[2.0] < 0.5 * rate[0.0] and rate[1.0] < 0.5 * rate[0.0]
    # 0.9 nA: still relaying at G = 1 and 2 (measured 39 / 28 Hz): G* rises with drive
    assert rate_09[1.0] > 0.5 * rate_09[0.0] and rate_09[2.0] > 15.0
    # the dataset's regime labels say the same
    assert trials.regime_of(0.25, 0.6) == "relay" and trials.regime_of(1.0, 0.6) == "oscillatory"
    assert trials.regime_of(1.0, 0.9) == "relay" and trials.regime_of(2.0, 0.9) == "relay"
