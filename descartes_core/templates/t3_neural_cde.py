"""T3 — neural controlled differential equation (Kidger et al. 2020), midpoint via torchdiffeq.

dz = f(z) dX with X = [t, u] interpolated linearly between samples, so dX/dt is the
backward difference of the inputs: the state integrates input increments, as a
synapse integrates presynaptic drive. f(z) is a low-rank, tanh-bounded map.
"""

import torch
import torch.nn as nn
from torchdiffeq import odeint

PROPERTIES = {
    "family": "neural_cde",
    "time_handling": "neural_cde",
    "gradient_strategy": "direct",
    "latent_structure": "unconstrained",
    "input_coupling": "controlled",
    "solver": "midpoint",
}

RANK = 16


class Vector(nn.Module):
    def __init__(self, n_control, latent_dim):
        super().__init__()
        self.state = nn.Linear(latent_dim, RANK)
        self.control = nn.Linear(n_control, RANK, bias=False)
        self.out = nn.Linear(RANK, latent_dim, bias=False)
        self.dx = None

    def forward(self, t, z):
        dx = self.dx[:, min(int(t.item()), self.dx.shape[1] - 1)]
        return self.out(torch.tanh(self.state(z)) * self.control(dx))


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.f = Vector(n_inputs + 1, latent_dim)
        self.initial = nn.Linear(n_inputs, latent_dim)
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        # the state carries the last input too, so the first increment of a segment is right
        if state is None:
            z0, last = self.initial(x[:, 0]), x[:, :1]
        else:
            z0, last = state[:, : -x.shape[-1]], state[:, None, -x.shape[-1] :]
        dt = torch.ones(batch, steps, 1, dtype=x.dtype, device=x.device)
        du = torch.diff(x, dim=1, prepend=last)
        self.f.dx = torch.cat([dt, du], dim=-1)
        t = torch.arange(steps + 1, dtype=x.dtype, device=x.device)
        z = odeint(self.f, z0, t, method="midpoint",
                   options={"perturb": True})[1:].transpose(0, 1)
        return self.readout(z), z, torch.cat([z[:, -1], x[:, -1]], dim=-1)
