"""The 160 hidden biological variables: layout, names, categories, timescales, dynamics.

Layout (Decision 8): tc_gating (60: m_T, h_T, m_H of TC cell i at 3i, 3i+1,
3i+2), nrt_state (60: V, m_T, h_T of nRt cell i at 60 + 3i …), synaptic (40:
g_GABA_A, g_GABA_B received by TC cell i at 120 + 2i, 121 + 2i, in nS with the
gain applied). Every value is the average over the sub-steps of its 1-ms bin.

Timescale class, from each variable's time constants (ms) over −100…−40 mV:
``mixed`` when they span more than two decades, otherwise ``fast`` when their
geometric mean is below 10 ms and ``slow`` above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from descartes_core import channels as ch
from descartes_core.circuit import GB_K1, GB_K2, GB_K4, N_CELLS, T_MAX

CATEGORIES = ("tc_gating", "nrt_state", "synaptic")


@dataclass(frozen=True)
class Kind:
    """One kind of variable, repeated once per cell."""

    category: str
    symbol: str
    unit: str
    dynamics: str
    tau_ms: tuple[float, float]


def _tau_range(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return round(float(values.min()), 3), round(float(values.max()), 3)


def _kinds() -> list[Kind]:
    v = np.linspace(-100.0, -40.0, 121)
    _, tc_tm, _, tc_th = ch.tc_t_gates(v)
    _, re_tm, _, re_th = ch.re_t_gates(v)
    _, ih_tau = ch.ih_gate(v)
    # nRt membrane: from the leak at rest (C/g_L) down to the Na+ conductance at a spike peak.
    v_tau = (1.0 / (0.05 + 200.0), 1.0 / 0.05)
    gabaa_tau = (1.0 / (20.0 * T_MAX + 0.162), 1.0 / 0.162)
    gabab_tau = (1.0 / (GB_K1 * T_MAX + GB_K2), 1.0 / GB_K4, 1.0 / GB_K2)
    return [
        Kind("tc_gating", "m_T", "1", "T-current activation (low-threshold spike onset)",
             _tau_range(tc_tm)),
        Kind("tc_gating", "h_T", "1", "T-current inactivation (de-inactivation enables rebound)",
             _tau_range(tc_th)),
        Kind("tc_gating", "m_H", "1", "H-current open fraction o1+o2 (Ca2+-upregulated sag)",
             _tau_range(ih_tau)),
        Kind("nrt_state", "V", "mV", "nRt membrane potential (bursts and spikes)",
             _tau_range(v_tau)),
        Kind("nrt_state", "m_T", "1", "nRt Ts-current activation", _tau_range(re_tm)),
        Kind("nrt_state", "h_T", "1", "nRt Ts-current inactivation", _tau_range(re_th)),
        Kind("synaptic", "g_GABAA", "nS", "fast nRt->TC inhibition, gain-scaled",
             _tau_range(gabaa_tau)),
        Kind("synaptic", "g_GABAB", "nS", "slow cooperative nRt->TC inhibition, gain-scaled",
             _tau_range(gabab_tau)),
    ]


def timescale(tau_ms: tuple[float, float]) -> str:
    lo, hi = tau_ms
    if hi / lo > 100.0:
        return "mixed"
    return "fast" if np.sqrt(lo * hi) < 10.0 else "slow"


def describe() -> list[dict]:
    """One record per variable, in dataset order: name, category, timescale, dynamics, …"""
    kinds = _kinds()
    out = []
    for block, cell_prefix in ((kinds[0:3], "tc"), (kinds[3:6], "nrt"), (kinds[6:8], "tc")):
        for i in range(N_CELLS):
            for kind in block:
                out.append({
                    "name": f"{cell_prefix}{i:02d}.{kind.symbol}",
                    "cell": i,
                    "timescale": timescale(kind.tau_ms),
                    **asdict(kind),
                })
    return out
