"""The TC–nRt thalamic circuit: 20 TC + 20 nRt cells, simulated in batches of trials.

Equations: ``shared/design/circuit-model.md`` (Destexhe, Bal, McCormick & Sejnowski
1996, ModelDB 3343), with its "Decisions" section. Choices the spec leaves open:

- Connectivity: a ring of 20 positions, radius 1 for all four projections (3
  presynaptic partners, each synapse carrying total/3). The spec recommends the
  ring for stationarity; it removes the chain's end effects.
- TC: g_KL = 0.003 µS × U(0.95, 1.05) per cell (Decision 1: never above
  0.0038 µS) and ḡ_h = 0.015 mS/cm² × U(0.95, 1.05), drawn once per circuit
  from ``CircuitParams.circuit_seed`` to break the symmetry of identical cells.
- A simulated dataset's circuit is a secret draw (``draw``): from a 128-bit
  secret, the seed of that heterogeneity and a factor on each maximal
  conductance of ``CONDUCTANCES`` within ±``JITTER`` of its published value
  (published values are not an animal's). The equations are public; the draw
  stays on the host with the data, so re-simulating a job's inputs with the
  published values does not give the hidden variables back. Jitter 0 is the
  published circuit: published conductances and circuit_seed 0.
- nRt rests at ≈ −90 mV, faithful to the source (spec §5.3 option a).
- I_h keeps the full Ca2+/CB up-regulation (P1, o1, o2); m_H is stored as the
  open fraction o1 + o2 (Decision 8); the conductance uses o1 + 2·o2.
- m_T of the TC T-current is a dynamic state (spec [DEVIATION], Q10 = 5).
- Numerics: dt = 0.05 ms, exponential Euler for every gate, [Ca]_i, the synaptic
  kinetics and V (spec §4.1). Within a step: transmitter pulses from the last
  0 mV upward crossings; synaptic gates; intrinsic gates at the old V; [Ca]_i
  and I_h from the new gates, old V and old [Ca]_i (o1 then o2, each with the
  other held); V from the new conductances, with E_Ca of the step's old [Ca]_i.
- The voltage-dependent steady states and decay factors are tabulated on a
  0.05 mV grid and linearly interpolated (NEURON's TABLE technique); the
  tables are built from the exact forms in :mod:`descartes_core.channels`.
- Release: a 0 mV upward crossing starts a 0.5 mM, 0.3 ms pulse unless the
  previous pulse started less than 1.3 ms ago; every crossing counts as a spike
  (Decision 6).
- Burn-in: 1 s with each trial's first input value and first gain held, no
  noise (Decision 2); the state at t = 0 is returned with the trial.

Inputs per bin (zero-order hold): channels 0–19 are the currents (nA) injected
into TC cells 0–19; channel 20 is the gain G ≥ 0 on the nRt→TC GABA_A and
GABA_B conductances (applied postsynaptically, so it acts at once).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from descartes_core import channels as ch
from descartes_core.circuit_kernel import Consts, advance

N_CELLS = 20
N_INPUTS = N_CELLS + 1
TC_AREA_CM2 = 2.895e-4
RE_AREA_CM2 = 1.426e-4
# Ca2+ influx per µA/cm² of inward T-current into a 1 µm shell: 1e4 / (2 F d) / 1e3.
CA_INFLUX = 1e4 / (2 * 96489.0 * 1.0) * 1e-3
CA_TAU = 5.0
T_MAX = 0.5
PULSE_MS = 0.3
DEAD_MS = 1.3
# Ih Ca2+/CB regulation (spec §1.5).
IH_K2, IH_CAC, IH_K4, IH_PC, IH_GINC, E_H = 4e-4, 0.002, 1e-3, 0.01, 2.0, -40.0
# GABA_B cascade (Fspin.oc values, spec §2.3).
GB_K1, GB_K2, GB_K3, GB_K4, GB_KD = 0.09, 0.0012, 0.18, 0.034, 100.0
E_NA, E_K, E_AMPA, E_GABAA, E_GABAB = 50.0, -100.0, 0.0, -85.0, -95.0
E_L_TC, E_L_RE = -70.0, -90.0

V_TABLE_MIN, V_TABLE_MAX, V_TABLE_STEP = -160.0, 80.0, 0.05
BURN_IN_MS = 1000.0
PROGRESS_CHUNK_MS = 50


@dataclass(frozen=True)
class CircuitParams:
    """Everything that defines the circuit; a dataset's meta.json records it whole."""

    dt: float = 0.05
    """Integration step (ms); every bin is integrated in bin_ms / dt sub-steps."""
    radius: int = 1
    """Connectivity radius on the ring: cell i receives from j with |i - j| ≤ radius."""
    g_l_tc: float = 0.01
    """TC leak conductance (mS/cm², E_L = −70 mV)."""
    g_l_re: float = 0.05
    """nRt leak conductance (mS/cm², E_L = −90 mV)."""
    g_na_tc: float = 90.0
    """TC fast Na+ maximal conductance (mS/cm²)."""
    g_k_tc: float = 10.0
    """TC delayed-rectifier K+ maximal conductance (mS/cm²)."""
    g_na_re: float = 200.0
    """nRt fast Na+ maximal conductance (mS/cm²)."""
    g_k_re: float = 20.0
    """nRt delayed-rectifier K+ maximal conductance (mS/cm²)."""
    g_kl_tc: float = 0.003
    """TC K+ leak point conductance (µS), before per-cell heterogeneity (Decision 1)."""
    g_h_tc: float = 0.015
    """TC I_h maximal conductance (mS/cm²), before per-cell heterogeneity."""
    heterogeneity: float = 0.05
    """Half-width of the uniform per-cell factor on g_KL and ḡ_h (0 gives identical cells)."""
    circuit_seed: int = 0
    """Seed of the per-cell heterogeneity (any size: a drawn circuit's is its 128-bit
    secret); one circuit is shared by every trial of a dataset."""
    g_t_tc: float = 2.0
    """TC I_T maximal conductance (mS/cm²); 0 removes the rebound burst (negative control)."""
    g_ts_re: float = 3.0
    """nRt I_Ts maximal conductance (mS/cm²)."""
    g_ampa: float = 0.2
    """Total TC→nRt AMPA conductance per nRt cell (µS)."""
    g_gabaa_tc: float = 0.02
    """Total nRt→TC GABA_A conductance per TC cell at gain 1 (µS)."""
    g_gabab_tc: float = 0.04
    """Total nRt→TC GABA_B conductance per TC cell at gain 1 (µS)."""
    g_gabaa_re: float = 0.2
    """Total nRt→nRt GABA_A conductance per nRt cell (µS)."""

    def without_synapses(self) -> CircuitParams:
        """The same cells, isolated (spec §5.2's single-cell checks)."""
        return dataclasses.replace(
            self, g_ampa=0.0, g_gabaa_tc=0.0, g_gabab_tc=0.0, g_gabaa_re=0.0
        )

    def cell_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-TC-cell multipliers of g_KL and ḡ_h, fixed by circuit_seed."""
        rng = np.random.default_rng(self.circuit_seed)
        lo, hi = 1.0 - self.heterogeneity, 1.0 + self.heterogeneity
        return rng.uniform(lo, hi, N_CELLS), rng.uniform(lo, hi, N_CELLS)


CONDUCTANCES = ("g_l_tc", "g_l_re", "g_kl_tc", "g_na_tc", "g_k_tc", "g_na_re", "g_k_re",
                "g_t_tc", "g_ts_re", "g_h_tc", "g_ampa", "g_gabaa_tc", "g_gabab_tc",
                "g_gabaa_re")
"""The conductances a drawn circuit scales, each by its own factor: every maximal
conductance of the cells (leaks included) and of the four synaptic projections."""
JITTER = 0.1
"""Half-width of the drawn conductance factors, U(1 − jitter, 1 + jitter), at most this."""
WIDTH = {"g_t_tc": 0.5, "g_ts_re": 0.5}
"""Conductances drawn over a share of the jitter (±5 % at the default): the two T-currents,
which make the rhythm. Measured with tests/test_network.py's checks, every seed's circuit a
fresh draw, 5 sets of 8 draws each: with every conductance at ±10 % the bicuculline check
failed in 2 sets (no rhythm left in some draws); with these two at ±5 % in none, as with
the heterogeneity alone. Both at −10 % removed the bicuculline rhythm on 7 of 8 seeds, at
−5 % it held on all (tests/test_secret_draw.py). The oscillation check's 4–10 Hz count
failed for fresh seeds at about the same rate in all three settings (1–3 sets of 5): a
property of that check's seeds, not of the draw."""
SECRET_HEX = 32
"""A circuit secret is at least this many hex digits: 128 bits, beyond any search."""


def new_secret() -> str:
    """A fresh circuit secret (``secrets``, 128 bits as hex)."""
    return secrets.token_hex(SECRET_HEX // 2)


def parse_secret(text: str) -> str:
    """A circuit secret as typed (lower-cased); ValueError unless ≥ 32 hex digits."""
    text = text.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{SECRET_HEX},}}", text):
        raise ValueError(f"a circuit secret is at least {SECRET_HEX} hex digits (128 bits), "
                         f"got {len(text)} characters")
    return text


def draw(secret: str | None, jitter: float = JITTER,
         published: CircuitParams = CircuitParams()) -> tuple[CircuitParams, dict[str, float]]:
    """The circuit a dataset is simulated with, and its factor per conductance.

    The secret seeds the per-cell heterogeneity (it is the circuit_seed) and, apart, one
    factor U(1 − w·jitter, 1 + w·jitter) on each of ``CONDUCTANCES`` (w: its ``WIDTH``,
    else 1). Jitter 0 gives `published` exactly, and needs no secret.
    """
    if not 0.0 <= jitter <= JITTER:
        raise ValueError(f"jitter must lie in [0, {JITTER}], got {jitter}")
    if jitter == 0.0:
        return published, dict.fromkeys(CONDUCTANCES, 1.0)
    if secret is None:
        raise ValueError("a drawn circuit (jitter > 0) needs its secret")
    key = int(parse_secret(secret), 16)
    rng = np.random.default_rng([key, 1])
    factors = {name: float(1.0 + jitter * WIDTH.get(name, 1.0) * rng.uniform(-1.0, 1.0))
               for name in CONDUCTANCES}
    scaled = {name: getattr(published, name) * f for name, f in factors.items()}
    return dataclasses.replace(published, circuit_seed=key, **scaled), factors


@dataclass
class SimResult:
    """Per-bin records of a batch of trials (N trials, T bins)."""

    tc_spikes: np.ndarray
    """(N, T, 20) uint8: 0 mV upward crossings of each TC cell per bin."""
    re_spikes: np.ndarray
    """(N, T, 20) uint8: the same for nRt cells."""
    biovars: np.ndarray
    """(N, T, 160) bin averages in the layout of :mod:`descartes_core.variables`."""
    initial_state: dict[str, np.ndarray]
    """Full state at t = 0 after burn-in, keyed as :func:`rest_state`; trial axis first."""
    voltage: np.ndarray | None = None
    """(N, T, 40) bin-averaged V of TC then nRt cells, when requested."""


def _tables(dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(value, slope) tables of shape (12, 2·nV): TC rows then nRt rows along axis 1.

    Rows: x_inf of (m_Na, h_Na, n_K, m_T, h_T), their decay factors exp(-dt/τ),
    then I_h's opening rate h_inf/τ_s and total rate 1/τ_s (zero for nRt).
    Slopes are per grid step, so value + frac·slope interpolates linearly.
    """
    v = np.arange(V_TABLE_MIN, V_TABLE_MAX + V_TABLE_STEP / 2, V_TABLE_STEP)
    values, slopes = [], []
    for v_t, t_gates, is_tc in ((-25.0, ch.tc_t_gates, True), (-55.0, ch.re_t_gates, False)):
        m, tm, h, th, n, tn = ch.hh_gates(v, v_t)
        mt, tmt, ht, tht = t_gates(v)
        if is_tc:
            ih_inf, ih_tau = ch.ih_gate(v)
            ih = [ih_inf / ih_tau, 1.0 / ih_tau]
        else:
            ih = [np.zeros_like(v), np.zeros_like(v)]
        taus = (tm, th, tn, tmt, tht)
        block = np.stack([m, h, n, mt, ht, *(np.exp(-dt / t) for t in taus), *ih])
        values.append(block)
        slopes.append(np.diff(block, axis=1, append=block[:, -1:]))
    return np.concatenate(values, axis=1), np.concatenate(slopes, axis=1)


def rest_state(n_trials: int) -> dict[str, np.ndarray]:
    """Spec §4.3 step 1: every gate at steady state, TC at −70 mV and nRt at −90 mV."""
    v0 = np.concatenate([np.full(N_CELLS, -70.0), np.full(N_CELLS, -90.0)])
    gates = np.empty((5, 2 * N_CELLS))
    for sl, v_t, t_gates in ((slice(0, N_CELLS), -25.0, ch.tc_t_gates),
                             (slice(N_CELLS, None), -55.0, ch.re_t_gates)):
        m, _, h, _, n, _ = ch.hh_gates(v0[sl], v_t)
        mt, _, ht, _ = t_gates(v0[sl])
        gates[:, sl] = np.stack([m, h, n, mt, ht])
    ih = np.zeros((n_trials, N_CELLS, 3))  # o1, o2, P1
    ih[..., 0] = ch.ih_gate(-70.0)[0]
    return {
        "v": np.tile(v0, (n_trials, 1)),
        "gates": np.ascontiguousarray(np.broadcast_to(gates.T, (n_trials, 2 * N_CELLS, 5))),
        "ca": np.full((n_trials, 2 * N_CELLS), ch.CA_REST),
        "ih": ih,
        "syn_r": np.zeros((n_trials, 2 * N_CELLS)),  # AMPA r of TC cells | GABA_A r of nRt
        "gabab": np.zeros((n_trials, N_CELLS, 2)),  # receptor R, G-protein of nRt cells
        "since_pulse": np.full((n_trials, 2 * N_CELLS), 10**6, dtype=np.int64),
    }


def _consts(params: CircuitParams) -> Consts:
    dt = params.dt
    value, slope = _tables(dt)
    kl_fac, h_fac = params.cell_factors()
    tc_den, re_den = 1e-3 / TC_AREA_CM2, 1e-3 / RE_AREA_CM2  # µS -> mS/cm²
    g_kl = params.g_kl_tc * kl_fac * tc_den
    n_part = 2 * params.radius + 1
    alpha = np.repeat([0.94, 20.0], N_CELLS)  # AMPA from TC, GABA_A from nRt
    beta = np.repeat([0.18, 0.162], N_CELLS)
    return Consts(
        dt=dt,
        table=np.ascontiguousarray(np.concatenate([value, slope]).T),
        n_v=value.shape[1] // 2,
        v_min=V_TABLE_MIN,
        v_max=V_TABLE_MAX,
        inv_step=1.0 / V_TABLE_STEP,
        g_leak=np.concatenate([params.g_l_tc + g_kl, np.full(N_CELLS, params.g_l_re)]),
        ge_leak=np.concatenate([params.g_l_tc * E_L_TC + g_kl * E_K,
                                np.full(N_CELLS, params.g_l_re * E_L_RE)]),
        g_na=np.repeat([params.g_na_tc, params.g_na_re], N_CELLS),
        g_k=np.repeat([params.g_k_tc, params.g_k_re], N_CELLS),
        g_t=np.repeat([params.g_t_tc, params.g_ts_re], N_CELLS),
        g_h=params.g_h_tc * h_fac,
        e_syn1=np.repeat([E_GABAA, E_AMPA], N_CELLS),
        e_syn2=np.repeat([E_GABAB, E_GABAA], N_CELLS),
        r_inf_on=alpha * T_MAX / (alpha * T_MAX + beta),
        r_dec_on=np.exp(-(alpha * T_MAX + beta) * dt),
        r_dec_off=np.exp(-beta * dt),
        partners=np.arange(-params.radius, params.radius + 1) % N_CELLS,
        w_ampa=params.g_ampa * re_den / n_part,
        w_gabaa_re=params.g_gabaa_re * re_den / n_part,
        w_gabaa_tc=params.g_gabaa_tc * tc_den / n_part,
        w_gabab_tc=params.g_gabab_tc * tc_den / n_part,
        gb_r_inf_on=GB_K1 * T_MAX / (GB_K1 * T_MAX + GB_K2),
        gb_r_dec_on=float(np.exp(-(GB_K1 * T_MAX + GB_K2) * dt)),
        gb_r_dec_off=float(np.exp(-GB_K2 * dt)),
        gb_g_ratio=GB_K3 / GB_K4,
        gb_g_dec=float(np.exp(-GB_K4 * dt)),
        gb_kd=GB_KD,
        ca_rest=ch.CA_REST,
        ca_dec=float(np.exp(-dt / CA_TAU)),
        ca_gain=CA_INFLUX * CA_TAU,
        nernst_ca=ch.NERNST_CA,
        ca_out=ch.CA_OUT,
        ih_k2=IH_K2,
        ih_inv_cac=1.0 / IH_CAC,
        ih_k4_pc=IH_K4 / IH_PC,
        ih_k4=IH_K4,
        ih_inv_pc=1.0 / IH_PC,
        ih_o2_dec=float(np.exp(-IH_K4 * dt)),
        ih_ginc=IH_GINC,
        e_h=E_H,
        e_na=E_NA,
        e_k=E_K,
        to_ns=TC_AREA_CM2 * 1e6,
        pulse_steps=round(PULSE_MS / dt),
        dead_steps=round(DEAD_MS / dt),
    )


def simulate(
    inputs: np.ndarray,
    params: CircuitParams = CircuitParams(),
    *,
    bin_ms: float = 1.0,
    burn_in_ms: float = BURN_IN_MS,
    re_current: np.ndarray | None = None,
    record_voltage: bool = False,
    progress: Callable[[float], None] | None = None,
) -> SimResult:
    """Integrate a batch of trials in float64.

    inputs: (N, T, 21) per bin — TC currents (nA) and the gain G.
    re_current: optional (N, T, 20) currents (nA) into nRt cells (single-cell checks).
    progress: called with the simulated milliseconds just completed, burn-in included.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.ndim != 3 or inputs.shape[2] != N_INPUTS:
        raise ValueError(f"inputs must be (trials, bins, {N_INPUTS}), got {inputs.shape}")
    n, n_bins, _ = inputs.shape
    sub = round(bin_ms / params.dt)
    if sub < 1 or abs(sub * params.dt - bin_ms) > 1e-9:
        raise ValueError(f"bin_ms={bin_ms} is not a whole number of dt={params.dt} steps")
    k = _consts(params)
    drive = np.ascontiguousarray(inputs[..., :N_CELLS]) * (1e-3 / TC_AREA_CM2)
    gain = np.ascontiguousarray(inputs[..., N_CELLS])
    if re_current is None:
        re_drive = np.zeros((n, n_bins, N_CELLS))
    else:
        re_drive = np.asarray(re_current, dtype=np.float64) * (1e-3 / RE_AREA_CM2)
    s = rest_state(n)
    state = (s["v"], s["gates"], s["ca"], s["ih"], s["syn_r"], s["gabab"], s["since_pulse"])

    tc_spikes = np.zeros((n, n_bins, N_CELLS), dtype=np.uint8)
    re_spikes = np.zeros((n, n_bins, N_CELLS), dtype=np.uint8)
    biovars = np.zeros((n, n_bins, 160), dtype=np.float32)
    voltage = np.zeros((n, n_bins if record_voltage else 0, 2 * N_CELLS), dtype=np.float32)
    outs = (tc_spikes, re_spikes, biovars, voltage)

    # The burn-in holds bin 0's inputs; it advances in whole bins of 1 ms or less.
    burn_bin = min(bin_ms, 1.0)
    burn_sub = round(burn_bin / params.dt)
    burn_bins = round(burn_in_ms / burn_bin)
    for t0 in range(0, burn_bins, PROGRESS_CHUNK_MS):
        t1 = min(burn_bins, t0 + PROGRESS_CHUNK_MS)
        advance(k, *state, drive, gain, re_drive, t0, t1, burn_sub, True, *outs)
        if progress is not None:
            progress((t1 - t0) * burn_bin)
    initial_state = {name: arr.copy() for name, arr in s.items()}
    chunk = max(1, round(PROGRESS_CHUNK_MS / bin_ms))
    for t0 in range(0, n_bins, chunk):
        t1 = min(n_bins, t0 + chunk)
        advance(k, *state, drive, gain, re_drive, t0, t1, sub, False, *outs)
        if progress is not None:
            progress((t1 - t0) * bin_ms)
    return SimResult(tc_spikes, re_spikes, biovars, initial_state,
                     voltage if record_voltage else None)
