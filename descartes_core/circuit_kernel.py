"""The compiled inner step of :mod:`descartes_core.circuit`.

One numba kernel advances a batch of trials over a range of bins, parallel over
trials (each trial is independent, so the result does not depend on the number
of threads). Profiling the numpy version showed each step spent most of its
time in ufunc dispatch and table gathers on small (trials × 40) arrays; a
compiled loop keeps one trial's whole state in L1 cache instead.

The voltage dependence comes only from the (value, slope) table built by the
caller from :mod:`descartes_core.channels`; nothing here restates a rate function.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

NC = 20


class Consts(NamedTuple):
    """Everything the kernel reads but never writes (columns 0–19 TC, 20–39 nRt)."""

    dt: float
    table: np.ndarray  # (2·nV, 24): 12 values then 12 slopes per 0.05-mV row
    n_v: int
    v_min: float
    v_max: float
    inv_step: float
    g_leak: np.ndarray  # (40,) leak + K-leak conductance, mS/cm²
    ge_leak: np.ndarray  # (40,) Σ g·E of the leaks
    g_na: np.ndarray
    g_k: np.ndarray
    g_t: np.ndarray
    g_h: np.ndarray  # (20,) TC only
    e_syn1: np.ndarray  # (40,) TC: GABA_A; nRt: AMPA
    e_syn2: np.ndarray  # (40,) TC: GABA_B; nRt: GABA_A
    r_inf_on: np.ndarray  # (40,) AMPA (presynaptic TC) then GABA_A (presynaptic nRt)
    r_dec_on: np.ndarray
    r_dec_off: np.ndarray
    partners: np.ndarray  # (2r+1,) ring offsets
    w_ampa: float
    w_gabaa_re: float
    w_gabaa_tc: float
    w_gabab_tc: float
    gb_r_inf_on: float
    gb_r_dec_on: float
    gb_r_dec_off: float
    gb_g_ratio: float
    gb_g_dec: float
    gb_kd: float
    ca_rest: float
    ca_dec: float
    ca_gain: float  # influx per µA/cm² times τ_Ca
    nernst_ca: float
    ca_out: float
    ih_k2: float
    ih_inv_cac: float
    ih_k4_pc: float
    ih_k4: float
    ih_inv_pc: float
    ih_o2_dec: float
    ih_ginc: float
    e_h: float
    e_na: float
    e_k: float
    to_ns: float
    pulse_steps: int
    dead_steps: int


@njit(parallel=True, cache=True, nogil=True)
def advance(k, v, gates, ca, ih, syn_r, gabab, since, drive, gain, re_drive,
            t_start, t_stop, sub, hold, tc_spikes, re_spikes, biovars, voltage):
    """Integrate bins [t_start, t_stop) of every trial; state arrays are updated in place.

    hold: use bin 0's inputs for every bin and record nothing (the burn-in).
    voltage: (N, T, 40) to record bin-averaged V, or an array with T = 0 to skip it.
    """
    n = v.shape[0]
    dt = k.dt
    rec_v = voltage.shape[1] > 0
    inv_sub = 1.0 / sub
    n_off = k.partners.shape[0]
    for b in prange(n):
        g1 = np.zeros(2 * NC)
        g2 = np.zeros(2 * NC)
        sig = np.zeros(NC)
        acc = np.zeros(160)
        acc_v = np.zeros(2 * NC)
        spk = np.zeros(2 * NC, dtype=np.int64)
        for t in range(t_start, t_stop):
            ti = 0 if hold else t
            gn = gain[b, ti]
            for _ in range(sub):
                # Synaptic kinetics of each presynaptic cell under its transmitter pulse.
                for j in range(2 * NC):
                    if since[b, j] < k.pulse_steps:
                        r_inf = k.r_inf_on[j]
                        syn_r[b, j] = r_inf + (syn_r[b, j] - r_inf) * k.r_dec_on[j]
                    else:
                        syn_r[b, j] *= k.r_dec_off[j]
                for j in range(NC):
                    if since[b, NC + j] < k.pulse_steps:
                        rr = k.gb_r_inf_on + (gabab[b, j, 0] - k.gb_r_inf_on) * k.gb_r_dec_on
                    else:
                        rr = gabab[b, j, 0] * k.gb_r_dec_off
                    gabab[b, j, 0] = rr
                    g_inf = k.gb_g_ratio * rr
                    gp = g_inf + (gabab[b, j, 1] - g_inf) * k.gb_g_dec
                    gabab[b, j, 1] = gp
                    g4 = gp * gp * gp * gp
                    sig[j] = g4 / (g4 + k.gb_kd)
                for i in range(NC):
                    s_ampa = 0.0
                    s_gaba = 0.0
                    s_gabab = 0.0
                    for o in range(n_off):
                        j = (i + k.partners[o]) % NC
                        s_ampa += syn_r[b, j]
                        s_gaba += syn_r[b, NC + j]
                        s_gabab += sig[j]
                    g1[i] = gn * k.w_gabaa_tc * s_gaba
                    g2[i] = gn * k.w_gabab_tc * s_gabab
                    g1[NC + i] = k.w_ampa * s_ampa
                    g2[NC + i] = k.w_gabaa_re * s_gaba

                for j in range(2 * NC):
                    vj = v[b, j]
                    # Tabulated gates at the old V (linear interpolation).
                    x = (min(max(vj, k.v_min), k.v_max) - k.v_min) * k.inv_step
                    row = int(x)
                    fr = x - row
                    if j >= NC:
                        row += k.n_v
                    tv = k.table[row]
                    for q in range(5):
                        x_inf = tv[q] + fr * tv[12 + q]
                        dec = tv[5 + q] + fr * tv[17 + q]
                        gates[b, j, q] = x_inf + (gates[b, j, q] - x_inf) * dec
                    m = gates[b, j, 0]
                    h = gates[b, j, 1]
                    nk = gates[b, j, 2]
                    mt = gates[b, j, 3]
                    ht = gates[b, j, 4]
                    # [Ca]_i from the new T gates, old V and old [Ca]_i.
                    ca_old = ca[b, j]
                    e_ca = k.nernst_ca * np.log(k.ca_out / ca_old)
                    g_ca = k.g_t[j] * mt * mt * ht
                    influx = g_ca * (e_ca - vj)
                    ca_eq = k.ca_rest + (influx * k.ca_gain if influx > 0.0 else 0.0)
                    ca[b, j] = ca_eq + (ca_old - ca_eq) * k.ca_dec
                    g_na = k.g_na[j] * m * m * m * h
                    n2 = nk * nk
                    g_k = k.g_k[j] * n2 * n2
                    gs = k.g_leak[j] + g_na + g_k + g_ca + g1[j] + g2[j]
                    gse = (k.ge_leak[j] + k.e_na * g_na + k.e_k * g_k + e_ca * g_ca
                           + k.e_syn1[j] * g1[j] + k.e_syn2[j] * g2[j])
                    if j < NC:
                        gse += drive[b, ti, j]
                        # I_h with Ca2+/CB up-regulation: P1, then o1 (o2 held), then o2.
                        c4 = ca_old * k.ih_inv_cac
                        c4 *= c4
                        k1 = k.ih_k2 * c4 * c4
                        k12 = k1 + k.ih_k2
                        p_inf = k1 / k12
                        p1 = p_inf + (ih[b, j, 2] - p_inf) * np.exp(-k12 * dt)
                        k3 = k.ih_k4_pc * p1
                        o2 = ih[b, j, 1]
                        rate = tv[11] + fr * tv[23] + k3
                        o1_inf = ((tv[10] + fr * tv[22]) * (1.0 - o2) + k.ih_k4 * o2) / rate
                        o1 = o1_inf + (ih[b, j, 0] - o1_inf) * np.exp(-rate * dt)
                        o2_inf = o1 * k.ih_inv_pc * p1
                        o2 = o2_inf + (o2 - o2_inf) * k.ih_o2_dec
                        ih[b, j, 0] = o1
                        ih[b, j, 1] = o2
                        ih[b, j, 2] = p1
                        g_h = k.g_h[j] * (o1 + k.ih_ginc * o2)
                        gs += g_h
                        gse += k.e_h * g_h
                    else:
                        gse += re_drive[b, ti, j - NC]
                    v_inf = gse / gs
                    v_new = v_inf + (vj - v_inf) * np.exp(-gs * dt)
                    v[b, j] = v_new
                    # A 0 mV upward crossing is a spike; it releases outside the dead time.
                    since[b, j] += 1
                    if vj < 0.0 <= v_new:
                        spk[j] += 1
                        if since[b, j] >= k.dead_steps:
                            since[b, j] = 0
                    if not hold:
                        if j < NC:
                            acc[3 * j] += mt
                            acc[3 * j + 1] += ht
                            acc[3 * j + 2] += ih[b, j, 0] + ih[b, j, 1]
                            acc[120 + 2 * j] += g1[j]
                            acc[121 + 2 * j] += g2[j]
                        else:
                            i = j - NC
                            acc[60 + 3 * i] += v_new
                            acc[61 + 3 * i] += mt
                            acc[62 + 3 * i] += ht
                        acc_v[j] += v_new
            if hold:
                spk[:] = 0
                continue
            for j in range(NC):
                tc_spikes[b, t, j] = min(spk[j], 255)
                re_spikes[b, t, j] = min(spk[NC + j], 255)
            for q in range(120):
                biovars[b, t, q] = acc[q] * inv_sub
            for q in range(120, 160):
                biovars[b, t, q] = acc[q] * (inv_sub * k.to_ns)
            if rec_v:
                for j in range(2 * NC):
                    voltage[b, t, j] = acc_v[j] * inv_sub
            acc[:] = 0.0
            acc_v[:] = 0.0
            spk[:] = 0
