"""The event scores: they tell a committed prediction from a hedge that spike r rates alike."""

import numpy as np
import pytest

from descartes_core import events, rhythm
from descartes_core.dataset import rate_from_spikes

N, T, C = 6, 1000, 4


@pytest.fixture(scope="module")
def spikes():
    """Bursts of four spikes at 3-ms intervals every ~150 ms per cell, at seeded times."""
    rng = np.random.default_rng(0)
    s = np.zeros((N, T, C))
    base = np.arange(50, T - 60, 150)
    for i in range(N):
        for c in range(C):
            for onset in base + rng.integers(0, 40, len(base)):
                s[i, onset : onset + 12 : 3, c] = 1
    return s


def test_the_truth_scores_perfectly(spikes):
    out = rate_from_spikes(spikes)
    e = events.event_scores(out, out, range(N), ["relay", "oscillatory"] * (N // 2))
    assert e["spread_ratio"] == pytest.approx(1.0)
    assert e["bursts_pred"] == e["bursts_true"] > 0
    assert e["burst_count_error"] == 0 and e["burst_timing_ms"] == 0 and e["burst_hits"] == 1
    assert e["distance_10ms"] == 0
    assert e["r_by_regime"] == {"oscillatory": 1.0, "relay": 1.0}


def test_a_hedge_misses_every_burst_that_jittered_spikes_still_hit(spikes):
    out = rate_from_spikes(spikes)
    hedge = rhythm.smoothed_rate(spikes, sigma_ms=25.0)  # spread, never committing
    jittered = rate_from_spikes(np.roll(spikes, 6, axis=1))  # every burst 6 ms late
    h = events.event_scores(hedge, out, range(N))
    j = events.event_scores(jittered, out, range(N))
    assert h["spread_ratio"] < 0.5 < j["spread_ratio"]
    assert h["bursts_pred"] == 0 and h["burst_timing_ms"] == events.MISS_MS
    assert h["burst_hits"] == 0
    assert j["burst_timing_ms"] == pytest.approx(6.0) and j["burst_hits"] == 1
    assert j["burst_count_error"] == 0
    assert set(h["r_by_regime"]) == {"all"}


def test_the_distance_at_10_ms_is_one_for_silence(spikes):
    out = rate_from_spikes(spikes)
    assert events.event_scores(np.zeros_like(out), out, [0, 1])["distance_10ms"] == 1.0
