"""T6 — Hodgkin–Huxley-structured latent: each model neuron is [V, 5 gates, 2 synapses].

Every gate relaxes as g ← g∞(V) + (g − g∞(V))·exp(−Δ/τ(V)) with learned sigmoid
steady states and bell-shaped time constants (Rush–Larsen, unconditionally stable);
V follows a conductance equation integrated with exponential Euler; synapses are
driven by the presynaptic neurons' V through a learned coupling. With 20 neurons
the latent has 160 = 20 × 8 dimensions. Trained on segments with the state carried.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

PROPERTIES = {
    "family": "hh_latent",
    "time_handling": "standard_ode",
    "gradient_strategy": "segmented",
    "latent_structure": "biophysical",
    "input_coupling": "multiplicative",
    "solver": "euler",
}

GATES, SYNAPSES = 5, 2


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        n = max(1, latent_dim // (1 + GATES + SYNAPSES))
        self.n = n
        self.theta = nn.Parameter(torch.randn(GATES, n) * 0.5)  # g∞ midpoints
        self.slope = nn.Parameter(torch.randn(GATES, n))  # g∞ slopes (sign: (in)activation)
        self.tau_log = nn.Parameter(torch.empty(GATES, n).uniform_(0.0, 6.0))  # 1–400 samples
        self.tau_bell = nn.Parameter(torch.zeros(GATES, n))
        self.g_max = nn.Parameter(torch.full((GATES, n), -1.0))
        self.e_rev = nn.Parameter(torch.randn(GATES, n))
        self.g_leak = nn.Parameter(torch.full((n,), -2.0))
        self.syn_w = nn.Parameter(torch.randn(SYNAPSES, n, n) * 0.1)
        self.syn_tau_log = nn.Parameter(torch.tensor([[1.5], [4.0]]).expand(SYNAPSES, n).clone())
        self.syn_e = nn.Parameter(torch.tensor([[-1.0], [-1.5]]).expand(SYNAPSES, n).clone())
        self.drive = nn.Linear(n_inputs, n)
        self.drive_gain = nn.Linear(n_inputs, n)
        self.readout = nn.Linear(n * (1 + GATES + SYNAPSES), n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        n = self.n
        if state is None:
            v = x.new_zeros(batch, n)
            g = torch.sigmoid(-self.slope * self.theta).expand(batch, -1, -1)
            s = x.new_zeros(batch, SYNAPSES, n)
        else:
            v, g, s = state.split([n, GATES * n, SYNAPSES * n], dim=-1)
            g = g.reshape(batch, GATES, n)
            s = s.reshape(batch, SYNAPSES, n)
        drive = self.drive(x)
        gain = 1.0 + F.softplus(self.drive_gain(x))  # multiplicative input coupling
        g_max, g_leak = F.softplus(self.g_max), F.softplus(self.g_leak)
        syn_rate = torch.exp(-self.syn_tau_log)
        out = []
        for t in range(steps):
            g_inf = torch.sigmoid(self.slope * (v[:, None] - self.theta))
            tau = 1.0 + torch.exp(self.tau_log) * torch.sigmoid(self.tau_bell - v[:, None] ** 2)
            g = g_inf + (g - g_inf) * torch.exp(-1.0 / tau)
            pre = torch.sigmoid(4.0 * v)  # presynaptic activity of every neuron
            a = torch.sigmoid(torch.einsum("kij,bj->bki", self.syn_w, pre))
            s_inf = a / (a + syn_rate)
            s = s_inf + (s - s_inf) * torch.exp(-(a + syn_rate))
            cond = g_max * g  # (B, GATES, n)
            g_syn = s * gain[:, t, None]
            g_sum = g_leak + cond.sum(1) + g_syn.sum(1)
            v_inf = ((cond * self.e_rev).sum(1) + (g_syn * self.syn_e).sum(1)
                     + drive[:, t]) / g_sum
            v = v_inf + (v - v_inf) * torch.exp(-g_sum)
            out.append(torch.cat([v, g.flatten(1), s.flatten(1)], dim=-1))
        z = torch.stack(out, dim=1)
        return self.readout(z), z, z[:, -1]
