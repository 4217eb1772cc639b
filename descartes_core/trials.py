"""The trial design: what drives the circuit in a dataset, and the regime each trial is in.

Every trial draws its own statistics (spec §3.1–3.3), from its own seed spawned
from the dataset seed, so trial i is the same whatever the number of trials:

- drive: a per-trial mean (15 % "spontaneous" trials at 0–0.15 nA, the rest
  0.3–1.0 nA) with ±10 % per cell, plus independent Ornstein–Uhlenbeck
  fluctuations per cell (τ 20–50 ms, SD 0.05–0.25 nA); in 40 % of trials the
  mean steps once by up to ±0.3 nA;
- hyperpolarising pulses (−0.3 to −0.1 nA, 50–200 ms) on 2–6 neighbouring
  cells, Poisson with mean 1.5 per trial and at least one in spontaneous
  trials, which trigger rebound bursts;
- gain G: half the trials in [0, 0.5], half in [0.5, 2] (the boundary is low,
  spec §3.3); in 30 % of trials G steps once, at 0.5–1.5 s, to a value from the
  other half, so the bifurcation lies inside trials.

Currents are clipped to [−0.3, 1.5] nA. The first 100 ms carry no pulse or step,
since the burn-in holds the first input value.

Regimes (``regime_of``) come from the gain sweep of the test suite
(tests/test_network.py), tonic drive ±10 % with a kick, 6 circuit seeds: at
0.6 nA, G ≤ 0.5 relays (≈ 20–28 Hz, little 3–14 Hz power), G = 0.75 is
intermediate and G ≥ 1 is rhythmic with TC output suppressed (≤ 3.5 Hz); at
≥ 0.9 nA the circuit relays for every G ≤ 2; without drive a triggered rhythm
persists for G ≥ 0.5.
"""

from __future__ import annotations

import numpy as np

from descartes_core.circuit import N_CELLS, N_INPUTS
from descartes_core.rhythm import ar1_filter

DRIVE_CLIP = (-0.3, 1.5)
REGIMES = ("relay", "intermediate", "oscillatory", "switch")


def regime_of(gain: float, drive_mean: float) -> str:
    """Nominal regime of a (G, mean drive in nA) pair, from the calibrated gain sweep."""
    if drive_mean >= 0.85 or (drive_mean >= 0.45 and gain <= 0.5):
        return "relay"
    if (drive_mean <= 0.7 and gain >= 1.0) or (drive_mean < 0.2 and gain >= 0.5):
        return "oscillatory"
    return "intermediate"


def _trial(rng: np.random.Generator, n_bins: int) -> tuple[np.ndarray, dict]:
    """One trial's (T, 21) inputs at 1 ms and its design record."""
    x = np.zeros((n_bins, N_INPUTS))
    spontaneous = rng.random() < 0.15
    mean = rng.uniform(0.0, 0.15) if spontaneous else rng.uniform(0.3, 1.0)
    per_cell = mean * rng.uniform(0.9, 1.1, N_CELLS)
    mean_t = np.full(n_bins, mean)
    drive_step_ms = None
    if not spontaneous and rng.random() < 0.4 and n_bins > 400:
        drive_step_ms = int(rng.integers(200, n_bins - 200))
        mean_t[drive_step_ms:] += rng.uniform(-0.3, 0.3)
        mean_t = np.maximum(mean_t, 0.0)
    x[:, :N_CELLS] = per_cell * (mean_t / max(mean, 1e-9))[:, None]
    tau, sd = rng.uniform(20.0, 50.0), rng.uniform(0.05, 0.25)
    a = np.exp(-1.0 / tau)
    noise = rng.standard_normal((n_bins, N_CELLS)) * (sd * np.sqrt(1 - a * a))
    noise[0] = 0.0
    x[:, :N_CELLS] += ar1_filter(noise, a)

    n_pulses = rng.poisson(1.5) + (1 if spontaneous else 0)
    for _ in range(n_pulses):
        dur = int(rng.integers(50, 201))
        if n_bins - dur <= 100:
            break
        start = int(rng.integers(100, n_bins - dur))
        cells = (int(rng.integers(N_CELLS)) + np.arange(rng.integers(2, 7))) % N_CELLS
        x[start : start + dur, cells] = rng.uniform(-0.3, -0.1)
    np.clip(x[:, :N_CELLS], *DRIVE_CLIP, out=x[:, :N_CELLS])

    low = rng.random() < 0.5
    g0 = rng.uniform(0.0, 0.5) if low else rng.uniform(0.5, 2.0)
    gains, gain_step_ms = [g0], None
    x[:, N_CELLS] = g0
    if rng.random() < 0.3 and n_bins >= 1000:
        gain_step_ms = int(rng.integers(n_bins // 4, 3 * n_bins // 4))
        g1 = rng.uniform(0.5, 2.0) if low else rng.uniform(0.0, 0.5)
        x[gain_step_ms:, N_CELLS] = g1
        gains.append(g1)

    segments = [regime_of(g, mean) for g in gains]
    if drive_step_ms is not None:
        segments.append(regime_of(gains[-1], float(mean_t[-1])))
    regime = segments[0] if len(set(segments)) == 1 else "switch"
    record = {
        "drive_mean_na": round(float(mean), 4),
        "drive_step_ms": drive_step_ms,
        "ou_tau_ms": round(float(tau), 2),
        "ou_sd_na": round(float(sd), 4),
        "pulses": int(n_pulses),
        "gains": [round(float(g), 4) for g in gains],
        "gain_step_ms": gain_step_ms,
        "regime": regime,
    }
    return x, record


def design(n_trials: int, n_bins: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    """(N, T, 21) inputs at 1-ms bins and one design record per trial."""
    children = np.random.SeedSequence(seed).spawn(n_trials)
    trials = [_trial(np.random.default_rng(c), n_bins) for c in children]
    return np.stack([t[0] for t in trials]), [t[1] for t in trials]
