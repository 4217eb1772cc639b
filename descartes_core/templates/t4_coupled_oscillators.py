"""T4 — coupled oscillators (coRNN, Rusch & Mishra 2021), IMEX Euler.

y'' = σ(W y + 𝒲 y' + V u + b) − γ y − ε y', a network of driven, damped oscillators
with a learned step per unit (UnICORNN). Gradients are bounded by construction, so
backpropagation runs through the whole trial. Latent = [y, y'].
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

PROPERTIES = {
    "family": "coupled_oscillator",
    "time_handling": "coupled_oscillator",
    "gradient_strategy": "direct",
    "latent_structure": "oscillatory",
    "input_coupling": "additive",
    "solver": "euler",
}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        n = latent_dim // 2
        self.n = n
        self.drive = nn.Linear(n_inputs, n)
        self.w_y = nn.Linear(n, n, bias=False)
        self.w_v = nn.Linear(n, n, bias=False)
        self.gamma = nn.Parameter(torch.rand(n) * 0.5)  # stiffness: natural frequencies
        self.eps = nn.Parameter(torch.rand(n) * 0.5)  # damping
        self.step = nn.Parameter(torch.full((n,), -1.0))  # per-unit Δt = 0.5·σ(step)
        self.readout = nn.Linear(2 * n, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        if state is None:
            y = x.new_zeros(batch, self.n)
            v = x.new_zeros(batch, self.n)
        else:
            y, v = state.chunk(2, dim=-1)
        drive = self.drive(x)
        dt = 0.5 * torch.sigmoid(self.step)
        gamma, eps = F.softplus(self.gamma), F.softplus(self.eps)
        out = []
        for t in range(steps):
            force = torch.tanh(self.w_y(y) + self.w_v(v) + drive[:, t]) - gamma * y
            v = (v + dt * force) / (1 + dt * eps)  # damping implicit, the rest explicit
            y = y + dt * v
            out.append(torch.cat([y, v], dim=-1))
        z = torch.stack(out, dim=1)
        return self.readout(z), z, z[:, -1]
