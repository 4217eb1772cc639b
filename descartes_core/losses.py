"""What training fits: the smoothed rate's squared error, or the TC spike counts themselves.

The three choices of the ``loss`` axis (contract.LossChoice):

- ``mse_rate``: the mean squared error of the z-scored smoothed rate (the dataset's
  outputs). Its optimum is the conditional mean, so under timing uncertainty it rewards
  a hedge: a low, spread rate that never commits to a burst (research/frontier.md: the
  predicted SD was 14.6 Hz against 33.6 Hz for the truth).
- ``poisson_counts``: the negative Poisson log-likelihood (as a deviance) of the spike
  counts per 1-ms bin, the model's output read as a log-rate. A burst's bins carry most of the
  likelihood, so a model gains by putting its rate where the spikes are.
- ``event_multiscale``: a van Rossum-style distance between the predicted intensity and
  the spike train at 2, 10 and 50 ms (each scale's squared error over the truth's
  variance at that scale), plus the squared log ratio of their spreads per trial and
  cell. Why: the nRt state needs TC bursts of the right size at roughly ±10 ms
  (frontier.md: spikes jittered ±10 ms still carry 39 of the 60 frontier variables). The
  50-ms scale forgives such a jitter, the 2-ms scale still rewards exact timing, and the
  spread term makes a hedge pay for the burst amplitude it never commits to.

A count loss's model output y is a log-rate relative to the mean: log λ = y + offset
(softly capped at one spike per bin) with offset = log(mean count per bin) of each cell
on the training trials, so a fresh model starts at the mean rate. Its predictions in the
dataset's units are the expected smoothed rate: the intensity through the same causal
filter that made the outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from descartes_core.contract import COUNT_LOSSES

__all__ = ["COUNT_LOSSES", "causal_filter", "count_offset", "event_distance", "intensity",
           "log_intensity", "poisson_nll", "scale_norms"]

SCALES_MS = (2.0, 10.0, 50.0)
"""The event loss's smoothing scales (ms at 1-ms bins)."""
SPREAD_WEIGHT = 1.0
"""Weight of the event loss's spread term beside the scales' mean."""



def causal_filter(x: torch.Tensor, tau: float, gain: float = 1.0) -> torch.Tensor:
    """y[t] = e^(−1/τ)·y[t−1] + gain·x[t] along dim 1 of (B, T, C), from y[−1] = 0, as one
    FFT convolution (rhythm.ar1_filter's recursion, differentiable and without a loop)."""
    steps = x.shape[1]
    k = torch.arange(steps, device=x.device, dtype=x.dtype)
    kernel = gain * torch.exp(-k / tau)
    size = 2 * steps
    out = torch.fft.irfft(torch.fft.rfft(x, n=size, dim=1)
                          * torch.fft.rfft(kernel, n=size)[None, :, None], n=size, dim=1)
    return out[:, :steps]


def log_intensity(y: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """log λ of a count-loss model's output y: y + offset, softly capped at 0, since a TC
    cell fires at most about once per 1-ms bin (λ = σ(y + offset), ≈ e^(y + offset) at
    real rates). The soft cap keeps the gradient where a hard clamp would cut it, and an
    exploding output stays a finite loss."""
    return -F.softplus(-(y + offset))


def intensity(y: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Expected spikes per bin of a count-loss model's output y."""
    return torch.exp(log_intensity(y, offset))


def poisson_nll(y: torch.Tensor, counts: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Mean Poisson deviance per bin: the negative log-likelihood of the counts less that
    of a perfect prediction (λ = k), so 0 is exact; the gradient is the likelihood's."""
    log_rate = log_intensity(y, offset)
    return (torch.exp(log_rate) - counts + torch.special.xlogy(counts, counts)
            - counts * log_rate).mean()


def scale_norms(counts: torch.Tensor) -> torch.Tensor:
    """The variance of the spike train smoothed at each of SCALES_MS, over the trials given:
    the event loss's fixed normalisers (computed once, on the training trials)."""
    return torch.stack([causal_filter(counts, s).var() for s in SCALES_MS]).clamp(min=1e-8)


def event_distance(y: torch.Tensor, counts: torch.Tensor, offset: torch.Tensor,
                   norms: torch.Tensor) -> torch.Tensor:
    """The event loss: mean over SCALES_MS of the normalised squared distance between the
    smoothed intensity and the smoothed spikes, plus SPREAD_WEIGHT × the mean squared
    log ratio of their standard deviations (10-ms scale) per trial and cell."""
    lam = intensity(y, offset)
    terms = []
    for s, norm in zip(SCALES_MS, norms, strict=True):
        terms.append((causal_filter(lam, s) - causal_filter(counts, s)).pow(2).mean() / norm)
    pred10, true10 = causal_filter(lam, 10.0), causal_filter(counts, 10.0)
    floor = 1e-3 * math.sqrt(float(norms[1]))  # silent trials neither explode nor dominate
    spread = (torch.log(pred10.std(dim=1) + floor) - torch.log(true10.std(dim=1) + floor))
    return torch.stack(terms).mean() + SPREAD_WEIGHT * spread.pow(2).mean()


def count_offset(counts: torch.Tensor) -> torch.Tensor:
    """log(mean count per bin) of each cell over (N, T, C) training counts, floored at one
    spike per 100 s so a silent cell still has a finite start."""
    return torch.log(counts.mean(dim=(0, 1)).clamp(min=1e-5))
