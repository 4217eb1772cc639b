"""T5 — diagonal linear state space (S4D / LRU), exact zero-order hold, FFT convolution.

x_k = λ ⊙ x_{k−1} + B u_k with complex λ = exp(−exp(ν) + iθ): a bank of damped
resonators and (θ ≈ 0) leaky integrators with time constants log-uniform over
1–1000 samples, the function space of the Volterra–Laguerre baseline. Computed
as one FFT convolution, no time loop. Latent = [Re x, Im x].
"""

import math

import torch
import torch.nn as nn

PROPERTIES = {
    "family": "diagonal_ssm",
    "time_handling": "state_space",
    "gradient_strategy": "direct",
    "latent_structure": "unconstrained",
    "input_coupling": "additive",
    "solver": "euler",
}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        n = latent_dim // 2
        tau = torch.exp(torch.empty(n).uniform_(0.0, math.log(1000.0)))
        self.nu = nn.Parameter(torch.log(1.0 / tau))  # decay rate exp(ν) = 1/τ
        theta = torch.empty(n).uniform_(0.0, 0.3)
        theta[: n // 2] = 0.0  # half of the modes are real poles, like a Laguerre bank
        self.theta = nn.Parameter(theta)
        self.b_re = nn.Linear(n_inputs, n, bias=False)
        self.b_im = nn.Linear(n_inputs, n, bias=False)
        self.readout = nn.Linear(2 * n, n_outputs)

    def forward(self, x, state=None):
        steps = x.shape[1]
        lam = torch.exp(torch.complex(-torch.exp(self.nu), self.theta))  # (n,)
        gain = torch.sqrt(1 - lam.abs() ** 2)  # input normalisation of the LRU
        bu = torch.complex(self.b_re(x), self.b_im(x)) * gain  # (B, T, n)
        k = torch.arange(steps, device=x.device, dtype=x.dtype)
        kernel = torch.exp(k[:, None] * torch.log(lam)[None, :])  # λ^k, (T, n)
        size = 2 * steps
        h = torch.fft.ifft(torch.fft.fft(bu, n=size, dim=1) * torch.fft.fft(kernel, n=size, dim=0),
                           dim=1)[:, :steps]
        if state is not None:
            x0 = torch.complex(*state.chunk(2, dim=-1))
            h = h + (kernel * lam)[None] * x0[:, None]
        z = torch.cat([h.real, h.imag], dim=-1)
        return self.readout(z), z, z[:, -1]
