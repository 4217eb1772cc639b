"""T8 — sparse neural ODE trained by multiple shooting, rk4 via torchdiffeq.

dz/dt = −z/τ + (M ⊙ W) tanh(z) + B u with a fixed random mask M of 15 % density
(NCP-like wiring, which localises latents to units). Trained by multiple shooting:
each segment starts from its own state, tied to the previous segment's end by a
continuity penalty; evaluated as one continuous rollout.
"""

import math

import torch
import torch.nn as nn
from torchdiffeq import odeint

PROPERTIES = {
    "family": "sparse_node",
    "time_handling": "standard_ode",
    "gradient_strategy": "shooting",
    "latent_structure": "sparse",
    "input_coupling": "concatenated",
    "solver": "rk4",
}

DENSITY = 0.15


class Field(nn.Module):
    def __init__(self, n_inputs, n):
        super().__init__()
        self.register_buffer("mask", (torch.rand(n, n) < DENSITY).float())
        self.w = nn.Parameter(0.5 * torch.randn(n, n) / math.sqrt(DENSITY * n))
        self.b = nn.Linear(n_inputs, n)
        self.log_tau = nn.Parameter(torch.empty(n).uniform_(0.0, math.log(300.0)))
        self.bu = self.w_eff = self.leak = None

    def prepare(self, x):
        """Everything that does not change within a rollout, computed once per forward."""
        self.bu = self.b(x)
        self.w_eff = (self.mask * self.w).T
        self.leak = torch.exp(-self.log_tau)

    def forward(self, t, z):
        bu = self.bu[:, min(int(t.item()), self.bu.shape[1] - 1)]
        return torch.addmm(bu - z * self.leak, torch.tanh(z), self.w_eff)


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.f = Field(n_inputs, latent_dim)
        self.readout = nn.Linear(latent_dim, n_outputs)
        self.latent_dim = latent_dim

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        z0 = x.new_zeros(batch, self.latent_dim) if state is None else state
        self.f.prepare(x)
        t = torch.arange(steps + 1, dtype=x.dtype, device=x.device)
        z = odeint(self.f, z0, t, method="rk4", options={"perturb": True})[1:].transpose(0, 1)
        return self.readout(z), z, z[:, -1]
