"""T2 — GRU-ODE (De Brouwer et al. 2019), midpoint steps via torchdiffeq, segmented TBPTT.

dh/dt = (1 − z) ⊙ (g − h): a gate relaxing to an input-dependent target at an input-
and state-dependent rate, the form of a Hodgkin–Huxley gate. The update-gate bias
starts high, so rates start slow (long default time constants).
"""

import torch
import torch.nn as nn
from torchdiffeq import odeint

PROPERTIES = {
    "family": "gru_ode",
    "time_handling": "gru_ode",
    "gradient_strategy": "segmented",
    "latent_structure": "unconstrained",
    "input_coupling": "gated",
    "solver": "midpoint",
}


class Field(nn.Module):
    def __init__(self, n_inputs, latent_dim):
        super().__init__()
        self.gates_u = nn.Linear(n_inputs, 2 * latent_dim)
        self.gates_h = nn.Linear(latent_dim, 2 * latent_dim, bias=False)
        self.cand_u = nn.Linear(n_inputs, latent_dim)
        self.cand_h = nn.Linear(latent_dim, latent_dim, bias=False)
        with torch.no_grad():
            self.gates_u.bias[:latent_dim].fill_(2.0)
        self.gu = self.cu = None

    def project(self, x):
        """Input projections for every sample at once, out of the solver's loop."""
        self.gu, self.cu = self.gates_u(x), self.cand_u(x)

    def forward(self, t, h):
        # perturb=True keeps every stage inside its step, so floor(t) holds the input over it
        i = min(int(t.item()), self.gu.shape[1] - 1)
        z, r = torch.sigmoid(self.gu[:, i] + self.gates_h(h)).chunk(2, dim=-1)
        g = torch.tanh(self.cu[:, i] + self.cand_h(r * h))
        return (1 - z) * (g - h)


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.field = Field(n_inputs, latent_dim)
        self.readout = nn.Linear(latent_dim, n_outputs)
        self.latent_dim = latent_dim

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        h0 = x.new_zeros(batch, self.latent_dim) if state is None else state
        self.field.project(x)
        t = torch.arange(steps + 1, dtype=x.dtype, device=x.device)
        h = odeint(self.field, h0, t, method="midpoint",
                   options={"perturb": True})[1:].transpose(0, 1)
        return self.readout(h), h, h[:, -1]
