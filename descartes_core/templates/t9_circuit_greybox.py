"""T9 — the circuit-structured grey-box: the TC–nRt loop, with its states as the latents.

One TC unit per cell, driven only by its own input channel: a voltage V with a
T-current (instantaneous activation m∞(V)², slow inactivation h), an h-current (slow
q), a fast potassium-like adaptation n after each event, and an event rate
a = σ((V − θ)/κ). Twenty nRt units are driven only by TC events, through AMPA-like
synapses on a ring (each nRt cell hears its TC neighbours), with their own T-current;
they inhibit TC through GABA_A (fast) and GABA_B (slow) conductances scaled by the gain
channel G, and those G-scaled conductances are latents, since a linear probe cannot form
G × activation itself. Gates follow Rush–Larsen steps and voltages exponential Euler at
1 ms; every constant is bounded and starts near its biological value. The readout is a
plain linear map of the latents (training fits it by least squares first), and the
state gradient passes a guard every few steps (stiff.guard): the T-current's positive
feedback otherwise blows up long segments. The step is one function of fixed shapes, so
training may compile it (stiff.fast_step). Latent: 5 TC + 3 nRt + 3 synaptic states per
cell, 220 wide.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from descartes_core.stiff import fast_step, guard

PROPERTIES = {
    "family": "circuit_greybox",
    "time_handling": "custom",
    "gradient_strategy": "segmented",
    "latent_structure": "biophysical",
    "input_coupling": "multiplicative",
    "solver": "euler",
    "loss": "event_multiscale",
}
LATENT_DIM = 220
CELLS = 20


class Bounded(nn.Module):
    """A constant in (lo, hi), per cell or shared, learned through a logit."""

    def __init__(self, init, lo, hi, size=1):
        super().__init__()
        self.lo, self.hi = lo, hi
        frac = (init - lo) / (hi - lo)
        self.raw = nn.Parameter(torch.full((size,), math.log(frac / (1.0 - frac))))

    def forward(self):
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.raw)


def relax(g, g_inf, tau):
    """One Rush–Larsen step of a gate toward g_inf with time constant tau (ms)."""
    return g_inf + (g - g_inf) * torch.exp(-1.0 / torch.as_tensor(tau))


def ring(n, reach):
    """Coupling of each cell to its neighbours within `reach` on a ring, rows summing to 1."""
    i = torch.arange(n)
    d = (i[:, None] - i[None, :]).abs()
    w = (torch.minimum(d, n - d) <= reach).float()
    return w / w.sum(1, keepdim=True)


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.drive_scale = nn.Parameter(torch.full((CELLS,), 0.3))  # inputs arrive z-scored
        self.drive_bias = nn.Parameter(torch.full((CELLS,), 0.6))
        self.gain_scale = Bounded(0.5, 0.05, 2.0)
        self.gain_bias = Bounded(0.8, 0.0, 2.0)
        # TC: leak, T-current, h-current, adaptation, event threshold
        self.tc_gl = Bounded(0.05, 0.01, 0.2, CELLS)
        self.tc_gt = Bounded(1.5, 0.2, 4.0, CELLS)
        self.tc_gh = Bounded(0.03, 0.005, 0.2, CELLS)
        self.tc_gk = Bounded(1.0, 0.1, 4.0)
        self.tc_theta = Bounded(-50.0, -60.0, -40.0)
        self.tc_tau_h = Bounded(30.0, 5.0, 120.0)
        self.tc_tau_q = Bounded(300.0, 50.0, 1500.0)
        # nRt: leak, T-current, AMPA from TC, threshold
        self.rt_gl = Bounded(0.05, 0.01, 0.2, CELLS)
        self.rt_gt = Bounded(1.0, 0.1, 5.0, CELLS)
        self.rt_theta = Bounded(-50.0, -60.0, -40.0)
        self.rt_tau_h = Bounded(50.0, 10.0, 200.0)
        self.g_ampa = Bounded(0.2, 0.02, 5.0)
        self.g_gaba_a = Bounded(0.1, 0.01, 3.0)
        self.g_gaba_b = Bounded(0.02, 0.002, 1.0)
        self.tau_a = Bounded(8.0, 2.0, 30.0)
        self.tau_b = Bounded(150.0, 40.0, 600.0)
        self.tc_to_rt = nn.Parameter(ring(CELLS, 1))
        self.rt_to_tc = nn.Parameter(ring(CELLS, 2))
        self.readout = nn.Linear(LATENT_DIM, n_outputs)

    def start(self, x):
        """The resting state of every unit."""
        b = x.shape[0]
        v = x.new_full((b, CELLS), -65.0)
        h = torch.sigmoid((v + 81.0) / -4.0)
        q = torch.sigmoid((v + 75.0) / -5.5)
        zero = x.new_zeros(b, CELLS)
        return torch.stack([v, zero, h, q, zero, v.clone(), zero, h.clone(), zero, zero, zero], 1)

    def params(self):
        """Every bounded constant, read once per forward pass."""
        return (self.tc_gl(), self.tc_gt(), self.tc_gh(), self.tc_gk(), self.tc_theta(),
                self.tc_tau_h(), self.tc_tau_q(), self.rt_gl(), self.rt_gt(), self.rt_theta(),
                self.rt_tau_h(), self.g_ampa(), self.g_gaba_a(), self.g_gaba_b(), self.tau_a(),
                self.tau_b(), F.relu(self.tc_to_rt), F.relu(self.rt_to_tc))

    def step(self, z, drive, g_now, p):
        """One 1-ms step of every unit: z (B, 11, CELLS) → the next z."""
        gl, gt, gh, gk, theta, tau_h, tau_q, rgl, rgt, rtheta, rtau_h, g_ampa, g_a, g_b, \
            tau_a, tau_b, w_in, w_back = p
        v, m, h, q, n, vr, mr, hr, sa, ga, gb = z.unbind(1)
        # TC: gates, then the voltage by exponential Euler through its conductances
        m = torch.sigmoid((v + 57.0) / 6.2)
        h = relax(h, torch.sigmoid((v + 81.0) / -4.0), tau_h)
        q = relax(q, torch.sigmoid((v + 75.0) / -5.5), tau_q)
        a = torch.sigmoid((v - theta) / 2.0)  # events per ms
        n = relax(n, a, 4.0)
        cond_t = gt * m * m * h
        gaba_a, gaba_b = g_a * ga, g_b * gb  # ga, gb carry G already
        g_sum = gl + cond_t + gh * q + gk * n + gaba_a + gaba_b
        v_inf = (gl * -70.0 + cond_t * 120.0 + gh * q * -40.0 + gk * n * -90.0
                 + gaba_a * -85.0 + gaba_b * -95.0 + drive) / g_sum
        v = v_inf + (v - v_inf) * torch.exp(-g_sum)
        # nRt, driven by TC events alone (AMPA reverses at 0 mV)
        heard = a @ w_in.T
        sa = relax(sa, heard / (heard + 0.2), 5.0)
        mr = torch.sigmoid((vr + 52.0) / 7.4)
        hr = relax(hr, torch.sigmoid((vr + 83.0) / -4.0), rtau_h)
        ar = torch.sigmoid((vr - rtheta) / 2.0)
        cond_rt = rgt * mr * mr * hr
        rg_sum = rgl + cond_rt + g_ampa * sa
        vr_inf = (rgl * -70.0 + cond_rt * 120.0) / rg_sum
        vr = vr_inf + (vr - vr_inf) * torch.exp(-rg_sum)
        # GABA_A / GABA_B onto TC, scaled by G
        pre = ar @ w_back.T
        ga = relax(ga, g_now * pre / (pre + 0.1), tau_a)
        gb = relax(gb, g_now * pre / (pre + 0.3), tau_b)
        return torch.stack([v, m, h, q, n, vr, mr, hr, sa, ga, gb], 1)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        z = self.start(x) if state is None else state.view(batch, 11, CELLS)
        drive = x[..., :CELLS] * self.drive_scale + self.drive_bias  # µA/cm², own channel only
        gain = F.softplus(x[..., CELLS] * self.gain_scale() + self.gain_bias())  # G ≥ 0
        p = self.params()
        step = fast_step(self.step)  # one step, fixed shapes: compiled once when asked
        out = []
        for t in range(steps):
            z = guard(step(z, drive[:, t], gain[:, t, None], p), t)
            out.append(z)
        zs = torch.stack(out, 1)  # (B, T, 11, CELLS)
        volts = (zs[:, :, [0, 5]] + 65.0) / 30.0  # voltages on the gates' scale
        latents = torch.cat([volts[:, :, :1], zs[:, :, 1:5], volts[:, :, 1:], zs[:, :, 6:]],
                            2).flatten(2)
        return self.readout(latents), latents, zs[:, -1].flatten(1)
