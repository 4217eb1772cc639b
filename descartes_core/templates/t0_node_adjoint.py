"""T0 — plain neural ODE through the whole trial with the adjoint (the known failure).

dz/dt = f([z, u(t)]), f an MLP, u linearly interpolated between samples, integrated
with dopri5 by torchdiffeq's adjoint over every sample. It exists to reproduce the
owner's ≈ 0.012 spike correlation; a much higher score means the pipeline leaks.
"""

import torch
import torch.nn as nn
from torchdiffeq import odeint_adjoint

PROPERTIES = {
    "family": "node_adjoint",
    "time_handling": "standard_ode",
    "gradient_strategy": "adjoint",
    "latent_structure": "unconstrained",
    "input_coupling": "concatenated",
    "solver": "dopri5",
}


class Dynamics(nn.Module):
    def __init__(self, n_inputs, latent_dim):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim + n_inputs, 128), nn.Tanh(), nn.Linear(128, latent_dim)
        )
        self.u = None

    def forward(self, t, z):
        # u_k is the input over step k -> k+1, linearly interpolated to the next sample
        last = self.u.shape[1] - 1
        i0 = min(int(t.item()), last)
        w = float(t.item()) - i0
        u = (1 - w) * self.u[:, i0] + w * self.u[:, min(i0 + 1, last)]
        return self.net(torch.cat([z, u], dim=-1))


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.f = Dynamics(n_inputs, latent_dim)
        self.z0 = nn.Parameter(torch.zeros(latent_dim))
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        z0 = self.z0.expand(batch, -1) if state is None else state
        self.f.u = x
        t = torch.arange(steps + 1, dtype=x.dtype, device=x.device)
        z = odeint_adjoint(self.f, z0, t, method="dopri5", rtol=1e-3, atol=1e-4,
                           adjoint_params=tuple(self.f.parameters()))
        z = z[1:].transpose(0, 1)
        return self.readout(z), z, z[:, -1]
