"""Voltage-dependent rate functions of the TC and nRt cells, evaluated exactly.

Destexhe, Bal, McCormick & Sejnowski 1996 (ModelDB 3343) at 36 °C, as written in
``shared/design/circuit-model.md`` §1. Every function takes membrane potential in
mV (any array shape) and returns a steady state (dimensionless) or a time
constant (ms). The simulator tabulates these once per dtype; the spec's §5.1 spot
values are asserted against these exact forms.
"""

from __future__ import annotations

import numpy as np

CELSIUS = 36.0
# RT/2F in mV at 36 °C (R = 8.314 J/mol/K, F = 96489 C/mol), for the Ca2+ Nernst potential.
NERNST_CA = 1e3 * 8.314 * (273.15 + CELSIUS) / (2 * 96489.0)
CA_OUT = 2.0  # mM
CA_REST = 2.4e-4  # mM

PHI_TC_M = 5.0 ** ((CELSIUS - 24.0) / 10.0)  # Q10 = 5 (Coulter et al. 1989), T_ref 24 °C
PHI_TC_H = 3.0 ** ((CELSIUS - 24.0) / 10.0)  # Q10 = 3
PHI_RE = 2.5 ** ((CELSIUS - 24.0) / 10.0)  # Q10 = 2.5 for both nRt I_Ts gates
T_SHIFT = 2.0  # mV screening-charge shift of both T-currents


def e_ca(ca_i):
    """Ca2+ reversal potential (mV) for an internal concentration in mM."""
    return NERNST_CA * np.log(CA_OUT / ca_i)


def _vtrap(x, y):
    """x / (exp(x/y) - 1), continuous through its removable singularity at x = 0."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x / y) < 1e-6
    safe = np.where(small, 1.0, x)
    return np.where(small, y * (1.0 - x / (2.0 * y)), safe / np.expm1(safe / y))


def hh_rates(v, v_t):
    """Traub-Miles Na+/K+ rates (ms^-1): returns (a_m, b_m, a_h, b_h, a_n, b_n)."""
    u = np.asarray(v, dtype=float) - v_t
    return (
        0.32 * _vtrap(13.0 - u, 4.0),
        0.28 * _vtrap(u - 40.0, 5.0),
        0.128 * np.exp((17.0 - u) / 18.0),
        4.0 / (1.0 + np.exp((40.0 - u) / 5.0)),
        0.032 * _vtrap(15.0 - u, 5.0),
        0.5 * np.exp((10.0 - u) / 40.0),
    )


def hh_gates(v, v_t):
    """Steady states and time constants (m_inf, tau_m, h_inf, tau_h, n_inf, tau_n)."""
    a_m, b_m, a_h, b_h, a_n, b_n = hh_rates(v, v_t)
    return (
        a_m / (a_m + b_m), 1.0 / (a_m + b_m),
        a_h / (a_h + b_h), 1.0 / (a_h + b_h),
        a_n / (a_n + b_n), 1.0 / (a_n + b_n),
    )


def tc_t_gates(v):
    """TC I_T: (m_inf, tau_m, h_inf, tau_h); m_T is a dynamic state here (spec [DEVIATION])."""
    vs = np.asarray(v, dtype=float) + T_SHIFT
    m_inf = 1.0 / (1.0 + np.exp(-(vs + 57.0) / 6.2))
    h_inf = 1.0 / (1.0 + np.exp((vs + 81.0) / 4.0))
    tau_m = (0.612 + 1.0 / (np.exp(-(vs + 132.0) / 16.7) + np.exp((vs + 16.8) / 18.2))) / PHI_TC_M
    tau_h = (
        30.8 + (211.4 + np.exp((vs + 113.2) / 5.0)) / (1.0 + np.exp((vs + 84.0) / 3.2))
    ) / PHI_TC_H
    return m_inf, tau_m, h_inf, tau_h


def re_t_gates(v):
    """nRt I_Ts: (m_inf, tau_m, h_inf, tau_h)."""
    vs = np.asarray(v, dtype=float) + T_SHIFT
    m_inf = 1.0 / (1.0 + np.exp(-(vs + 50.0) / 7.4))
    h_inf = 1.0 / (1.0 + np.exp((vs + 78.0) / 5.0))
    tau_m = (3.0 + 1.0 / (np.exp((vs + 25.0) / 10.0) + np.exp(-(vs + 100.0) / 15.0))) / PHI_RE
    tau_h = (85.0 + 1.0 / (np.exp((vs + 46.0) / 4.0) + np.exp(-(vs + 405.0) / 50.0))) / PHI_RE
    return m_inf, tau_m, h_inf, tau_h


def ih_gate(v):
    """TC I_h voltage gate: (h_inf, tau_s) of the c1 <-> o1 transition."""
    v = np.asarray(v, dtype=float)
    h_inf = 1.0 / (1.0 + np.exp((v + 75.0) / 5.5))
    tau_s = 20.0 + 1000.0 / (np.exp((v + 71.5) / 14.2) + np.exp(-(v + 89.0) / 11.6))
    return h_inf, tau_s
