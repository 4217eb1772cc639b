"""T1 — liquid time-constant cell (Hasani et al. 2021), fused semi-implicit Euler.

dz/dt = −(1/τ + f) ⊙ z + f ⊙ A with f = σ(W_z z + W_u u + b) ≥ 0: a conductance-based
membrane (f a conductance, A a reversal potential, τ a leak), a natural fit for
voltages and synaptic conductances. Three fused unfolds per sample.
"""

import math

import torch
import torch.nn as nn

PROPERTIES = {
    "family": "ltc",
    "time_handling": "ltc",
    "gradient_strategy": "direct",
    "latent_structure": "unconstrained",
    "input_coupling": "multiplicative",
    "solver": "euler",
}

UNFOLDS = 3


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.w_u = nn.Linear(n_inputs, latent_dim)
        self.w_z = nn.Linear(latent_dim, latent_dim, bias=False)
        self.reversal = nn.Parameter(torch.randn(latent_dim))
        # time constants log-uniform over 1–1000 samples
        log_tau = torch.empty(latent_dim).uniform_(0.0, math.log(1000.0))
        self.log_tau = nn.Parameter(log_tau)
        self.readout = nn.Linear(latent_dim, n_outputs)
        self.latent_dim = latent_dim

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        z = x.new_zeros(batch, self.latent_dim) if state is None else state
        drive = self.w_u(x)  # input projection hoisted out of the loop
        leak = torch.exp(-self.log_tau)
        h = 1.0 / UNFOLDS
        out = []
        for t in range(steps):
            for _ in range(UNFOLDS):
                f = torch.sigmoid(self.w_z(z) + drive[:, t])
                z = (z + h * f * self.reversal) / (1.0 + h * (leak + f))
            out.append(z)
        z_all = torch.stack(out, dim=1)
        return self.readout(z_all), z_all, z
