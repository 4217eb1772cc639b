"""Scores that see events: does a predicted rate commit to the bursts, and when?

The smoothed spike r rewards a hedge as much as a burst placed right (research/frontier.md:
a hedge at r 0.63 carried no frontier variable, jittered true spikes at r 0.66 carried 39).
These scores sit beside it, per trial, on the split being scored:

- ``spread_ratio``: the SD over time of the predicted rate over the true rate's (per trial
  and cell, averaged); a hedge is well below 1.
- ``bursts_true`` / ``bursts_pred``: bursts per trial (all cells), a burst being the
  smoothed rate crossing ``BURST_HZ`` (about three spikes within 8 ms, which tonic
  spiking at 20–30 Hz never reaches), with ``REFRACTORY_MS`` before the next one counts.
- ``burst_count_error``: mean |predicted − true| bursts per trial and cell.
- ``burst_timing_ms``: for each true burst, the distance to the nearest predicted burst of
  the same cell, capped at ``MISS_MS`` (a miss costs the cap); ``burst_hits``: the share
  within ±10 ms.
- ``distance_10ms``: the van Rossum distance at τ = 10 ms between the model's events and
  the spikes, over the spikes' own norm. The outputs are the spikes through exactly that
  kernel, so this is Σ(pred − out)² / Σ out²: 0 is exact, 1 is silence.
- ``r_by_regime``: the spike r within each regime of the trial design (relay,
  oscillatory, …).
"""

from __future__ import annotations

import numpy as np

RATE_TAU_MS = 10.0
"""The outputs' causal exponential kernel (dataset.OUTPUT_TAU_MS is this value)."""
BURST_HZ = 200.0
REFRACTORY_MS = 20
MISS_MS = 50.0
HIT_MS = 10.0


def implied_counts(rate: np.ndarray, tau_ms: float = RATE_TAU_MS) -> np.ndarray:
    """The spike intensity per 1-ms bin behind a causal-exponential rate (…, T, C) in Hz:
    the kernel inverted, (r[t] − e^(−1/τ)·r[t−1]) · τ / 1000, clipped at 0."""
    r = np.asarray(rate, dtype=np.float64)
    prev = np.concatenate([np.zeros_like(r[..., :1, :]), r[..., :-1, :]], axis=-2)
    return np.clip((r - np.exp(-1.0 / tau_ms) * prev) * tau_ms / 1000.0, 0.0, None)


def burst_onsets(rate: np.ndarray) -> list[np.ndarray]:
    """Onset bins of the bursts of each (T,) series in a (S, T) array of rates in Hz."""
    above = rate >= BURST_HZ
    up = above & ~np.concatenate([np.zeros_like(above[:, :1]), above[:, :-1]], axis=1)
    onsets = []
    for row in up:
        kept, last = [], -REFRACTORY_MS
        for t in np.flatnonzero(row):
            if t - last >= REFRACTORY_MS:
                kept.append(t)
                last = t
        onsets.append(np.asarray(kept, dtype=np.int64))
    return onsets


def _pearson_cells(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over cells of r between (S, C) columns; a constant column counts as r 0."""
    a, b = a - a.mean(0), b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    r = np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)
    return float(r.mean())


def event_scores(pred: np.ndarray, outputs: np.ndarray, trials, regimes=None) -> dict:
    """The event scores of predicted rates against the outputs, both (N, T, C) in Hz, on
    the trials `trials`; `regimes` gives each trial of the dataset its regime name."""
    idx = np.asarray(trials, dtype=np.intp)
    p = np.asarray(pred[idx], dtype=np.float64)
    o = np.asarray(outputs[idx], dtype=np.float64)
    n, t, c = o.shape
    sd_p, sd_o = p.std(axis=1), o.std(axis=1)  # (n, c)
    live = sd_o > 0
    spread = float(sd_p[live].mean() / sd_o[live].mean()) if live.any() else float("nan")
    flat = lambda a: a.transpose(0, 2, 1).reshape(n * c, t)  # noqa: E731 (series per row)
    true_on, pred_on = burst_onsets(flat(o)), burst_onsets(flat(p))
    counts_true = np.array([len(x) for x in true_on])
    counts_pred = np.array([len(x) for x in pred_on])
    gaps = []
    for tr, pr in zip(true_on, pred_on, strict=True):
        for onset in tr:
            gaps.append(min(MISS_MS, float(np.abs(pr - onset).min())) if len(pr) else MISS_MS)
    gaps = np.asarray(gaps)
    out = {
        "spread_ratio": round(spread, 4),
        "bursts_true": round(float(counts_true.sum() / n), 3),
        "bursts_pred": round(float(counts_pred.sum() / n), 3),
        "burst_count_error": round(float(np.abs(counts_pred - counts_true).mean()), 4),
        "burst_timing_ms": round(float(gaps.mean()), 3) if len(gaps) else None,
        "burst_hits": round(float((gaps <= HIT_MS).mean()), 4) if len(gaps) else None,
        "distance_10ms": round(float(((p - o) ** 2).sum() / max((o ** 2).sum(), 1e-12)), 4),
        "r_by_regime": {},
    }
    names = np.asarray(["all"] * len(pred) if regimes is None else list(regimes))[idx]
    for regime in sorted(set(names)):
        sel = names == regime
        out["r_by_regime"][str(regime)] = round(_pearson_cells(
            p[sel].reshape(-1, c), o[sel].reshape(-1, c)), 4)
    return out

