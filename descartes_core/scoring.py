"""Scoring a candidate from the arrays the sandbox returns: a pure function of arrays.

- Spike correlation: Pearson r between predicted and true output per TC channel, over
  the concatenated test trials, averaged over the 20 channels.
- Probes: for each of the 160 variables a ridge regression from the latents at the
  same time step (every ``stride``-th step), fit on train trials with the penalty
  chosen per variable on validation trials, scored by Pearson r on test trials.
  Latents are z-scored with train statistics, so one penalty grid fits every model.
- Recovered: r ≥ threshold (0.5); near-miss: 0.3 ≤ r < threshold.
- Controls: the same probes on the untrained model's latents (the null, which runs
  the candidate's code and so can be gamed by it), on a seeded random recurrent
  network of the same width computed on the host (the trusted control,
  ``descartes_core.controls``) and on the input-only Laguerre features (the input
  baseline). ``above_null``, ``beyond_control`` and ``beyond_inputs`` count the
  variables this model recovers that the control does not; the latent width stands
  beside every count, because a probe's reach grows with it.
- CCA: regularised canonical correlation between latents and biovars, fit on
  train trials; the mean of the first ``CCA_COMPONENTS`` canonical correlations
  of the projections on test trials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

RIDGE_ALPHAS = np.logspace(-3, 4, 15)
NEAR_MISS = 0.3
CCA_COMPONENTS = 10
CCA_REG = 1e-3


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two (samples, k) arrays; 0 where one is constant."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    num = (a * b).sum(axis=0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)


def _samples(arr: np.ndarray, trials: np.ndarray, stride: int) -> np.ndarray:
    a = np.asarray(arr[trials][:, ::stride], dtype=np.float64)
    return a.reshape(-1, a.shape[-1])


def spike_correlation(pred: np.ndarray, outputs: np.ndarray, test: np.ndarray) -> float:
    """Mean over output channels of Pearson r on the concatenated test trials."""
    return float(pearson_columns(_samples(pred, test, 1), _samples(outputs, test, 1)).mean())


def probe_correlations(latents, biovars, split: dict, stride: int = 5) -> np.ndarray:
    """Held-out Pearson r of a ridge probe from the latents, per biological variable."""
    train, val, test = (np.asarray(split[k], dtype=np.intp) for k in ("train", "val", "test"))
    x_tr, y_tr = _samples(latents, train, stride), _samples(biovars, train, stride)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd[sd < 1e-8] = np.inf  # a constant latent carries nothing
    y_mu = y_tr.mean(axis=0)

    def z(x):
        return (x - mu) / sd

    u, s, vt = np.linalg.svd(z(x_tr), full_matrices=False)
    uty = u.T @ (y_tr - y_mu)
    x_val, y_val = z(_samples(latents, val, stride)), _samples(biovars, val, stride)
    best_r = np.full(y_tr.shape[1], -np.inf)
    best_w = np.zeros((x_tr.shape[1], y_tr.shape[1]))
    for alpha in RIDGE_ALPHAS:
        w = vt.T @ ((s / (s * s + alpha * len(x_tr)))[:, None] * uty)
        r = pearson_columns(x_val @ w, y_val)
        better = r > best_r
        best_r[better] = r[better]
        best_w[:, better] = w[:, better]
    x_te, y_te = z(_samples(latents, test, stride)), _samples(biovars, test, stride)
    return pearson_columns(x_te @ best_w + y_mu, y_te)


def cca_score(latents, biovars, split: dict, stride: int = 5,
              k: int = CCA_COMPONENTS) -> float:
    """Mean of the first k held-out canonical correlations between latents and biovars."""
    def prep(arr, trials):
        return _samples(arr, np.asarray(split[trials], dtype=np.intp), stride)

    x_tr, y_tr = prep(latents, "train"), prep(biovars, "train")
    x_te, y_te = prep(latents, "test"), prep(biovars, "test")
    xm, ym = x_tr.mean(axis=0), y_tr.mean(axis=0)

    def whitener(a):
        c = np.atleast_2d(np.cov(a, rowvar=False))
        c += CCA_REG * max(np.trace(c) / len(c), 1e-12) * np.eye(len(c))  # constant latents too
        vals, vecs = np.linalg.eigh(c)
        return vecs @ np.diag(1.0 / np.sqrt(vals)) @ vecs.T

    wx, wy = whitener(x_tr), whitener(y_tr)
    cross = wx @ ((x_tr - xm).T @ (y_tr - ym) / (len(x_tr) - 1)) @ wy
    a, _, bt = np.linalg.svd(cross)
    k = min(k, a.shape[1], bt.shape[0])
    px = (x_te - xm) @ wx @ a[:, :k]
    py = (y_te - ym) @ wy @ bt.T[:, :k]
    return float(np.mean(pearson_columns(px, py)))


@dataclass
class Scores:
    """Everything scoring reports for one model; JSON-ready through ``to_dict``."""

    spike_corr: float
    latent_dim: int
    recovered: int
    near_misses: list[str]
    by_category: dict[str, int]
    by_timescale: dict[str, int]
    cca: float
    correlations: list[float]
    recovered_vector: list[bool]
    threshold: float
    null_recovered: int | None = None
    above_null: int | None = None
    control_recovered: int | None = None
    beyond_control: int | None = None
    input_recovered: int | None = None
    beyond_inputs: int | None = None
    gain_over_inputs: list[float] | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def score(
    pred: np.ndarray,
    latents: np.ndarray,
    outputs: np.ndarray,
    biovars: np.ndarray,
    meta: dict,
    *,
    threshold: float = 0.5,
    null_latents: np.ndarray | None = None,
    control_r: np.ndarray | None = None,
    input_r: np.ndarray | None = None,
    stride: int = 5,
) -> Scores:
    """Score predictions and latents (every trial) against a dataset's held-out trials."""
    split = meta["split"]
    r = probe_correlations(latents, biovars, split, stride)
    rec = r >= threshold
    variables = meta["variables"]
    by_cat: dict[str, int] = {}
    by_ts: dict[str, int] = {}
    for v, ok in zip(variables, rec, strict=True):
        by_cat[v["category"]] = by_cat.get(v["category"], 0) + int(ok)
        by_ts[v["timescale"]] = by_ts.get(v["timescale"], 0) + int(ok)
    near = [v["name"] for v, x in zip(variables, r, strict=True) if NEAR_MISS <= x < threshold]
    s = Scores(
        spike_corr=spike_correlation(pred, outputs, np.asarray(split["test"], dtype=np.intp)),
        latent_dim=int(latents.shape[-1]),
        recovered=int(rec.sum()),
        near_misses=near,
        by_category=by_cat,
        by_timescale=by_ts,
        cca=cca_score(latents, biovars, split, stride),
        correlations=[round(float(x), 5) for x in r],
        recovered_vector=[bool(x) for x in rec],
        threshold=threshold,
    )
    if null_latents is not None:
        r_null = probe_correlations(null_latents, biovars, split, stride)
        s.null_recovered = int((r_null >= threshold).sum())
        s.above_null = int((rec & (r_null < threshold)).sum())
    if control_r is not None:
        s.control_recovered = int((control_r >= threshold).sum())
        s.beyond_control = int((rec & (control_r < threshold)).sum())
    if input_r is not None:
        s.input_recovered = int((input_r >= threshold).sum())
        s.beyond_inputs = int((rec & (input_r < threshold)).sum())
        s.gain_over_inputs = [round(float(x), 5) for x in r - input_r]
    return s
