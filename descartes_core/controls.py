"""The trusted control: what a network that learned nothing recovers, computed on the host.

A candidate's own untrained null runs the candidate's code, so the candidate can game it
(one that returns zero latents until its first training-mode forward drove its null to
zero). The trusted control runs none of it: a fixed, seeded random recurrent network
of the same latent width, driven by the inputs alone. Its units are leaky-tanh
integrators whose time constants spread log-uniformly from ``TAU_MS`` low to high, so
they hold the inputs' history at the circuit's fast and slow timescales: a reservoir a
linear probe can use well, and therefore a control that is hard to beat.
"""

from __future__ import annotations

import numpy as np

TAU_MS = (2.0, 300.0)
SPECTRAL_RADIUS = 0.9
INPUT_GAIN = 1.0


def random_network_latents(inputs: np.ndarray, latent_dim: int, dt_ms: float,
                           seed: int = 0) -> np.ndarray:
    """(N, T, latent_dim) float32 states of the seeded random network on `inputs` (N, T, I).

    The inputs are z-scored per channel over every trial (inputs only: nothing of the
    answers). All trials advance together, one (N, D) step per sample."""
    rng = np.random.default_rng(seed)
    n, t, n_in = inputs.shape
    w = rng.standard_normal((latent_dim, latent_dim))
    w *= SPECTRAL_RADIUS / max(np.abs(np.linalg.eigvals(w)).max(), 1e-12)
    u = rng.standard_normal((n_in, latent_dim)) * INPUT_GAIN / np.sqrt(n_in)
    b = rng.standard_normal(latent_dim) * 0.1
    tau = np.exp(rng.uniform(np.log(TAU_MS[0]), np.log(TAU_MS[1]), latent_dim))
    a = 1.0 - np.exp(-dt_ms / tau)
    x = np.asarray(inputs, dtype=np.float64)
    x = (x - x.mean(axis=(0, 1))) / (x.std(axis=(0, 1)) + 1e-8)
    drive = x @ u + b  # (N, T, D)
    h = np.zeros((n, latent_dim))
    out = np.empty((n, t, latent_dim), dtype=np.float32)
    wt = w.T
    for k in range(t):
        h = h + a * (np.tanh(h @ wt + drive[:, k]) - h)
        out[:, k] = h
    return out
