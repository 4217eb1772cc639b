"""T7 — hierarchical multi-timescale closed-form continuous-time cells (CfC), distilled.

A fast block (τ 1–10 samples) is driven by the inputs; a slow block (τ 50–1000) is
driven by the fast block and gates it top-down. Each block takes a closed-form
relaxation step, as CfC does: h ← h + λ⊙(tanh(g) − h) with λ = σ(f)·(1 − e^{−Δ/τ}) and
heads f, g of [h, input], so τ bounds how fast each unit can move. Trained first on a
teacher's outputs (the Volterra–Laguerre baseline), then on the data.
"""

import math

import torch
import torch.nn as nn

PROPERTIES = {
    "family": "hierarchical_cfc",
    "time_handling": "ltc",
    "gradient_strategy": "distillation",
    "latent_structure": "hierarchical",
    "input_coupling": "gated",
    "solver": "euler",
}


class Block(nn.Module):
    def __init__(self, n_in, n, tau_lo, tau_hi):
        super().__init__()
        self.heads = nn.Linear(n_in + n, 2 * n)
        tau = torch.empty(n).uniform_(math.log(tau_lo), math.log(tau_hi))
        self.log_tau = nn.Parameter(tau)

    def forward(self, h, inp):
        f, g = self.heads(torch.cat([h, inp], dim=-1)).chunk(2, dim=-1)
        rate = torch.sigmoid(f) * -torch.expm1(-torch.exp(-self.log_tau))
        return h + rate * (torch.tanh(g) - h)


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.n_fast = latent_dim // 2
        self.n_slow = latent_dim - self.n_fast
        self.fast = Block(n_inputs, self.n_fast, 1.0, 10.0)
        self.slow = Block(self.n_fast, self.n_slow, 50.0, 1000.0)
        self.top_down = nn.Linear(self.n_slow, self.n_fast)
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        if state is None:
            hf = x.new_zeros(batch, self.n_fast)
            hs = x.new_zeros(batch, self.n_slow)
        else:
            hf, hs = state.split([self.n_fast, self.n_slow], dim=-1)
        out = []
        for t in range(steps):
            hf = self.fast(hf, x[:, t]) * (1.0 + torch.tanh(self.top_down(hs)))
            hs = self.slow(hs, hf)
            out.append(torch.cat([hf, hs], dim=-1))
        z = torch.stack(out, dim=1)
        return self.readout(z), z, z[:, -1]
