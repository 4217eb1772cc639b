"""Population-rhythm statistics of TC spike trains (the estimator of the network checks).

Spike counts per 1-ms bin are averaged over TC cells, smoothed with a Gaussian of
σ = 8 ms (unsmoothed spectra are dominated by intraburst structure, spec §5.4),
and analysed over a window (default 1000–2000 ms) with a Hann-windowed
periodogram of the mean-removed rate: 1 Hz resolution for a 1-s window. Band
edges are inclusive.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

SMOOTH_MS = 8.0
RHYTHM_BAND = (3.0, 14.0)
TOTAL_BAND = (1.0, 500.0)


def ar1_filter(x: np.ndarray, a: float, gain: float = 1.0) -> np.ndarray:
    """y[t] = a·y[t-1] + gain·x[t] along axis -2 of (..., T, channels), from y[-1] = 0."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    acc = np.zeros(x.shape[:-2] + x.shape[-1:])
    for t in range(x.shape[-2]):
        acc = a * acc + gain * x[..., t, :]
        y[..., t, :] = acc
    return y


def smoothed_rate(spikes: np.ndarray, bin_ms: float = 1.0, sigma_ms: float = SMOOTH_MS):
    """Gaussian-smoothed rate in Hz along the time axis (axis -2 of (..., T, cells))."""
    counts = np.asarray(spikes, dtype=np.float64)
    return gaussian_filter1d(counts, sigma_ms / bin_ms, axis=-2, mode="nearest") * (
        1000.0 / bin_ms
    )


def spectrum(spikes: np.ndarray, window_ms=(1000, 2000)):
    """(freqs, power) of the smoothed population rate of (..., T, cells) 1-ms counts."""
    pop = smoothed_rate(spikes).mean(axis=-1)[..., window_ms[0] : window_ms[1]]
    pop = pop - pop.mean(axis=-1, keepdims=True)
    power = np.abs(np.fft.rfft(pop * np.hanning(pop.shape[-1]), axis=-1)) ** 2
    return np.fft.rfftfreq(pop.shape[-1], d=1e-3), power


def band_share(spikes: np.ndarray, band=RHYTHM_BAND, window_ms=(1000, 2000)) -> np.ndarray:
    """Share of the population-rate power (1–500 Hz) that lies in `band`; 0 for silence."""
    f, p = spectrum(spikes, window_ms)
    inside = p[..., (f >= band[0]) & (f <= band[1])].sum(axis=-1)
    total = p[..., (f >= TOTAL_BAND[0]) & (f <= TOTAL_BAND[1])].sum(axis=-1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def dominant_frequency(spikes: np.ndarray, window_ms=(1000, 2000), fmin: float = 1.0):
    """Frequency (Hz) of the largest spectral peak at or above fmin."""
    f, p = spectrum(spikes, window_ms)
    keep = f >= fmin
    return f[keep][np.argmax(p[..., keep], axis=-1)]


def mean_rate(spikes: np.ndarray, window_ms=(1000, 2000)) -> np.ndarray:
    """Mean spike rate per cell (Hz) over the window, averaged over cells."""
    w = np.asarray(spikes)[..., window_ms[0] : window_ms[1], :]
    return w.sum(axis=(-2, -1)) / (w.shape[-1] * (window_ms[1] - window_ms[0]) / 1000.0)
