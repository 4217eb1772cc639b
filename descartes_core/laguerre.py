"""Discrete Laguerre filter banks (Marmarelis 1993), the input baseline's features.

The spec's recursion (``shared/design/circuit-model.md`` §6.2), with zero initial
conditions: v_0 is a first-order low-pass of x, and each v_j is v_{j-1} through
the all-pass (√α − z⁻¹)/(1 − √α z⁻¹). As a filter bank it has infinite memory, so
no truncation of the basis is needed.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def features(x: np.ndarray, alpha: float, n_funcs: int) -> np.ndarray:
    """Laguerre projections of (N, T, C) signals: (N, T, C·L), channel-major."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sqrt(alpha)
    v = lfilter([np.sqrt(1.0 - alpha)], [1.0, -s], x, axis=1)
    out = [v]
    for _ in range(1, n_funcs):
        v = lfilter([s, -1.0], [1.0, -s], v, axis=1)
        out.append(v)
    return np.stack(out, axis=-1).reshape(*x.shape[:2], -1)


def basis(alpha: float, n_funcs: int, n_lags: int) -> np.ndarray:
    """(L, M) impulse responses b_j(m) of the bank, for inspection and tests."""
    impulse = np.zeros((1, n_lags, 1))
    impulse[0, 0, 0] = 1.0
    return features(impulse, alpha, n_funcs)[0].T
