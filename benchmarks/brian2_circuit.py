"""The TC–nRt circuit of descartes_core.circuit, written for Brian2 2.9 (Cython target).

Run by ``bench_simulator.py`` with the interpreter of its own Brian2 environment
(Brian2 2.9 needs numpy < 2.4):

    python brian2_circuit.py IN.npz OUT.json

IN.npz holds ``inputs`` (N, T, 21) as for ``descartes_core.circuit.simulate`` and
``config``, a JSON string with every constant, per-cell conductance and initial
value, all made on the project side from descartes_core so that no number is
retyped here. The rate functions must be restated as Brian2 strings; they are the
module-level dicts below, which the benchmark checks against
``descartes_core.channels`` before it runs anything.

Layout (Decision 9 of the design spec): N trials are N copies of the 20 cells in
one NeuronGroup per cell type, integrated with exponential Euler. Synaptic gates
live on the presynaptic cell (its transmitter pulse is shared by all its
synapses); Synapses only sum them into the postsynaptic conductances.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

# Rates (1/ms) of u = V - V_T in mV; vtrap(x, y) = x / (exp(x/y) - 1) = y / exprel(x/y).
HH = {
    "a_m": "0.32 * 4 / exprel((13 - u) / 4)",
    "b_m": "0.28 * 5 / exprel((u - 40) / 5)",
    "a_h": "0.128 * exp((17 - u) / 18)",
    "b_h": "4 / (1 + exp((40 - u) / 5))",
    "a_n": "0.032 * 5 / exprel((15 - u) / 5)",
    "b_n": "0.5 * exp((10 - u) / 40)",
}
# T-currents of vs = V + shift (mV); time constants in ms before division by the Q10 factor.
TC_T = {
    "mT_inf": "1 / (1 + exp(-(vs + 57) / 6.2))",
    "tau_mT": "0.612 + 1 / (exp(-(vs + 132) / 16.7) + exp((vs + 16.8) / 18.2))",
    "hT_inf": "1 / (1 + exp((vs + 81) / 4))",
    "tau_hT": "30.8 + (211.4 + exp((vs + 113.2) / 5)) / (1 + exp((vs + 84) / 3.2))",
}
RE_T = {
    "mT_inf": "1 / (1 + exp(-(vs + 50) / 7.4))",
    "tau_mT": "3 + 1 / (exp((vs + 25) / 10) + exp(-(vs + 100) / 15))",
    "hT_inf": "1 / (1 + exp((vs + 78) / 5))",
    "tau_hT": "85 + 1 / (exp((vs + 46) / 4) + exp(-(vs + 405) / 50))",
}
# I_h voltage gate of vm = V in mV; ih_tau in ms.
IH = {
    "ih_inf": "1 / (1 + exp((vm + 75) / 5.5))",
    "ih_tau": "20 + 1000 / (exp((vm + 71.5) / 14.2) + exp(-(vm + 89) / 11.6))",
}

CELL = """
dv/dt = (I_in - I_L - I_Na - I_K - I_Ca - I_syn) / C_M : volt
vm = v / mV : 1
u = vm - VT : 1
vs = vm + T_SHIFT : 1
I_L = g_l * v - ge_l : amp/meter**2
I_Na = G_NA * m**3 * h * (v - E_NA) : amp/meter**2
I_K = G_K * n**4 * (v - E_K) : amp/meter**2
I_Ca = G_T * mT**2 * hT * (v - e_ca) : amp/meter**2
e_ca = NERNST_CA * log(CA_OUT / ca) * mV : volt (constant over dt)
dm/dt = (a_m - (a_m + b_m) * m) / ms : 1
dh/dt = (a_h - (a_h + b_h) * h) / ms : 1
dn/dt = (a_n - (a_n + b_n) * n) / ms : 1
dmT/dt = (mT_inf - mT) * PHI_M / (tau_mT * ms) : 1
dhT/dt = (hT_inf - hT) * PHI_H / (tau_hT * ms) : 1
dca/dt = (CA_INFLUX * clip(-I_Ca / (uA/cm**2), 0, inf) + (CA_REST - ca) / CA_TAU) / ms : 1
pulse = T_MAX * int(t - lastspike < PULSE) : 1 (constant over dt)
dr/dt = (ALPHA * pulse * (1 - r) - BETA * r) / ms : 1
g_l : siemens/meter**2 (constant)
ge_l : amp/meter**2 (constant)
"""
# o1: alpha (1 - o1 - o2) - beta o1 with alpha = ih_inf / ih_tau, beta = (1 - ih_inf) / ih_tau.
TC_EXTRA = """
I_in = drive(t, i) / AREA : amp/meter**2 (constant over dt)
gain = gain_arr(t, trial) : 1 (constant over dt)
I_syn = gain * (g_a * (v - E_A) + g_b * (v - E_B)) + I_h : amp/meter**2
I_h = g_h * (o1 + IH_GINC * o2) * (v - E_H) : amp/meter**2
do1/dt = ((ih_inf * (1 - o2) - o1) / ih_tau + IH_K4 * (o2 - P1 / IH_PC * o1)) / ms : 1
do2/dt = IH_K4 * (P1 / IH_PC * o1 - o2) / ms : 1
dP1/dt = IH_K2 * ((ca / IH_CAC)**4 * (1 - P1) - P1) / ms : 1
g_h : siemens/meter**2 (constant)
g_a : siemens/meter**2
g_b : siemens/meter**2
trial : integer (constant)
"""
RE_EXTRA = """
I_in = 0 * amp/meter**2 : amp/meter**2
I_syn = g_ampa * (v - E_AMPA) + g_rr * (v - E_A) : amp/meter**2
dR/dt = (GB_K1 * pulse * (1 - R) - GB_K2 * R) / ms : 1
dGp/dt = (GB_K3 * R - GB_K4 * Gp) / ms : 1
g_ampa : siemens/meter**2
g_rr : siemens/meter**2
"""


def _equations(kind: str) -> str:
    rates = {**HH, **(TC_T | IH if kind == "tc" else RE_T)}
    # Each rate is evaluated once per step, at the old V as exponential Euler does anyway;
    # left as plain subexpressions, Brian2 inlines (and recomputes) them at every use.
    lines = [f"{name} = {expr} : 1 (constant over dt)" for name, expr in rates.items()]
    return CELL + (TC_EXTRA if kind == "tc" else RE_EXTRA) + "\n".join(lines)


def run(inputs: np.ndarray, cfg: dict) -> dict:
    import brian2 as b2
    from brian2 import cm, mS, ms, mV, nA, uA, uF

    b2.prefs.codegen.target = "cython"
    b2.defaultclock.dt = cfg["dt"] * ms
    n_trials, n_bins, _ = inputs.shape
    nc = cfg["n_cells"]
    bin_ms = cfg["bin_ms"]
    # Column k of the drive array is TC neuron k (trial k // nc, cell k % nc).
    drive = b2.TimedArray(inputs[..., :nc].transpose(1, 0, 2).reshape(n_bins, -1) * nA,
                          dt=bin_ms * ms)
    gain_arr = b2.TimedArray(np.ascontiguousarray(inputs[..., nc].T), dt=bin_ms * ms)
    shared = {k: cfg[k] for k in ("T_SHIFT", "NERNST_CA", "CA_OUT", "CA_INFLUX", "CA_REST",
                                  "CA_TAU", "T_MAX")}
    shared |= {"C_M": 1 * uF / cm**2, "E_NA": cfg["E_NA"] * mV, "E_K": cfg["E_K"] * mV,
               "PULSE": cfg["pulse_ms"] * ms, "inf": np.inf}
    # Explicit namespaces: Brian2 would otherwise look names up in the caller's frame.
    units = {"mV": mV, "ms": ms, "uA": uA, "cm": cm, "mS": mS}
    shared |= units
    dens = mS / cm**2

    groups, spike_mons = {}, {}
    for kind in ("tc", "re"):
        c = cfg[kind]
        ns = shared | {"VT": c["v_t"], "G_NA": c["g_na"] * dens, "G_K": c["g_k"] * dens,
                       "G_T": c["g_t"] * dens, "PHI_M": c["phi_m"], "PHI_H": c["phi_h"],
                       "ALPHA": c["alpha"], "BETA": c["beta"]}
        if kind == "tc":
            ns |= {"drive": drive, "gain_arr": gain_arr, "AREA": cfg["TC_AREA_CM2"] * cm**2,
                   "E_A": cfg["E_GABAA"] * mV, "E_B": cfg["E_GABAB"] * mV,
                   "E_H": cfg["E_H"] * mV}
            ns |= {k: cfg[k] for k in ("IH_GINC", "IH_K4", "IH_PC", "IH_K2", "IH_CAC")}
        else:
            ns |= {"E_AMPA": cfg["E_AMPA"] * mV, "E_A": cfg["E_GABAA"] * mV}
            ns |= {k: cfg[k] for k in ("GB_K1", "GB_K2", "GB_K3", "GB_K4")}
        g = b2.NeuronGroup(
            n_trials * nc, _equations(kind), method="exponential_euler", namespace=ns,
            threshold="v > 0*mV",
            # Release needs an upward crossing and 1.3 ms since the last pulse began.
            refractory=f"v > 0*mV or t - lastspike < {cfg['dead_ms']}*ms",
            name=kind)
        g.g_l = np.tile(c["g_l"], n_trials) * dens
        g.ge_l = np.tile(c["ge_l"], n_trials) * uA / cm**2
        for var, val in c["init"].items():
            setattr(g, var, np.tile(val, n_trials) * (mV if var == "v" else 1))
        if kind == "tc":
            g.g_h = np.tile(c["g_h"], n_trials) * dens
            g.trial = np.repeat(np.arange(n_trials), nc)
        groups[kind] = g
        spike_mons[kind] = b2.SpikeMonitor(g, record=cfg["record"])

    # Ring of the given offsets inside each trial: post (b, i) <- pre (b, (i + o) % nc).
    post = np.arange(n_trials * nc)
    pre = [(post // nc) * nc + (post % nc + o) % nc for o in cfg["offsets"]]
    pre, post = np.concatenate(pre), np.tile(post, len(cfg["offsets"]))
    w = cfg["w"]
    syn_models = [
        ("tc", "re", f"g_ampa_post = {w['ampa']} * r_pre * mS/cm**2 : siemens/meter**2 (summed)"),
        ("re", "re", f"g_rr_post = {w['gabaa_re']} * r_pre * mS/cm**2 "
                     ": siemens/meter**2 (summed)"),
        ("re", "tc", f"g_a_post = {w['gabaa_tc']} * r_pre * mS/cm**2 : siemens/meter**2 (summed)\n"
                     f"g_b_post = {w['gabab_tc']} * Gp_pre**4 / (Gp_pre**4 + {cfg['GB_KD']}) "
                     "* mS/cm**2 : siemens/meter**2 (summed)"),
    ]
    synapses = []
    for src, dst, model in syn_models:
        s = b2.Synapses(groups[src], groups[dst], model, namespace=units, name=f"{src}_to_{dst}")
        s.connect(i=pre, j=post)
        synapses.append(s)
    objects = [*groups.values(), *spike_mons.values(), *synapses]
    v_mon = None
    if cfg["record"]:
        v_mon = b2.StateMonitor(groups["tc"], "v", record=True, dt=cfg["record_dt_ms"] * ms)
        objects.append(v_mon)
    net = b2.Network(*objects)

    out = {"build_s": 0.0}
    if cfg["warmup_ms"] > 0:
        # The first run generates and compiles the code; restore() then returns to t = 0.
        net.store()
        t0 = time.perf_counter()
        net.run(cfg["warmup_ms"] * ms)
        out["build_s"] = time.perf_counter() - t0
        net.restore()
    t0 = time.perf_counter()
    net.run(n_bins * bin_ms * ms)
    out["total_s"] = time.perf_counter() - t0
    out["loop_s"] = b2.get_device()._last_run_time
    for kind, mon in spike_mons.items():
        out[f"{kind}_count"] = mon.count[:].reshape(n_trials, nc).sum(axis=1).tolist()
    if cfg["record"]:
        trains = spike_mons["tc"].spike_trains()
        out["tc_spike_ms"] = [(trains[k] / ms).tolist() for k in range(n_trials * nc)]
        out["tc_v"] = (v_mon.v / mV).tolist()
    return out


if __name__ == "__main__":
    data = np.load(sys.argv[1])
    result = run(data["inputs"], json.loads(str(data["config"])))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
