"""The reference baselines: Volterra–Laguerre, an LSTM and a plain neural ODE (T0).

Volterra–Laguerre (``shared/design/circuit-model.md`` §6): per TC output i, a
second-order model on Laguerre projections of its own drive, its two ring
neighbours and the gain — all first-order terms, the second-order self terms of
each channel and the cross terms own drive × gain — with coefficients shared by
the 20 cells (the ring is translation-invariant). Least squares with a ridge
penalty, (α, λ) chosen on validation trials. Its latent is the Laguerre bank of
all 21 inputs, which is also the *input baseline* every score is compared with.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from descartes_core import controls, laguerre, scoring
from descartes_core.contract import load_candidate, template_sources
from descartes_core.dataset import Dataset, cache_root
from descartes_core.training import TrainConfig, evaluate

ALPHAS = (0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
N_FUNCS = 6
LAMBDAS = (1e-8, 1e-6, 1e-4, 1e-2)
FIT_STRIDE = 5
N_CELLS = 20


def _design(f: np.ndarray) -> np.ndarray:
    """(…, 20, n_terms) second-order features of every TC output from (…, 21·L) projections."""
    lf = N_FUNCS
    ch = f.reshape(*f.shape[:-1], -1, lf)  # (…, 21, L)
    own = ch[..., :N_CELLS, :]
    left = np.roll(own, 1, axis=-2)  # channel i-1 at position i
    right = np.roll(own, -1, axis=-2)
    gain = np.broadcast_to(ch[..., N_CELLS:, :], own.shape)
    iu = np.triu_indices(lf)
    cols = [np.ones((*own.shape[:-1], 1)), own, left, right, gain]
    cols += [(v[..., :, None] * v[..., None, :])[..., iu[0], iu[1]]
             for v in (own, left, right, gain)]
    cols.append((own[..., :, None] * gain[..., None, :]).reshape(*own.shape[:-1], -1))
    return np.concatenate(cols, axis=-1)


def _normal_equations(f, y, trials):
    a = b = 0.0
    for i in range(0, len(trials), 16):
        phi = _design(f[trials[i : i + 16], ::FIT_STRIDE])
        phi = phi.reshape(-1, phi.shape[-1])
        t = y[trials[i : i + 16], ::FIT_STRIDE].reshape(-1)
        a = a + phi.T @ phi
        b = b + phi.T @ t
    return a, b


def _predict(f: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(…, 20) outputs; the same sum as ``_design(f) @ coef``, as quadratic forms per block,
    without building the design at full time resolution."""
    lf = N_FUNCS
    ch = f.reshape(*f.shape[:-1], -1, lf)
    own = ch[..., :N_CELLS, :]
    blocks = (own, np.roll(own, 1, axis=-2), np.roll(own, -1, axis=-2), ch[..., N_CELLS:, :])
    out = np.full(own.shape[:-1], coef[0])
    pos = 1
    for v in blocks:
        out = out + v @ coef[pos : pos + lf]
        pos += lf
    iu = np.triu_indices(lf)
    n_tri = len(iu[0])
    for v in blocks:
        q = np.zeros((lf, lf))
        q[iu] = coef[pos : pos + n_tri]
        out = out + np.einsum("...i,ij,...j->...", v, q, v)
        pos += n_tri
    cross = coef[pos : pos + lf * lf].reshape(lf, lf)
    return out + np.einsum("...i,ij,...j->...", own, cross, blocks[3])


@dataclass
class VolterraLaguerre:
    alpha: float
    lam: float
    coef: np.ndarray
    predictions: np.ndarray
    latents: np.ndarray
    val_corr: float


def fit_volterra_laguerre(ds: Dataset) -> VolterraLaguerre:
    """Fit on train trials, choose (α, λ) on validation trials; predict every trial."""
    split = {k: np.asarray(v, dtype=np.intp) for k, v in ds.meta["split"].items()}
    best = None
    for alpha in ALPHAS:
        f = laguerre.features(ds.inputs, alpha, N_FUNCS)
        a, b = _normal_equations(f, ds.outputs, split["train"])
        scale = np.mean(np.diag(a))
        f_val = f[split["val"], ::FIT_STRIDE]
        y_val = ds.outputs[split["val"], ::FIT_STRIDE]
        for lam in LAMBDAS:
            reg = lam * scale * np.eye(len(a))
            reg[0, 0] = 0.0  # never shrink the intercept
            coef = np.linalg.solve(a + reg, b)
            r = scoring.spike_correlation(_predict(f_val, coef), y_val, np.arange(len(y_val)))
            if best is None or r > best[0]:
                best = (r, alpha, lam, coef)
    r, alpha, lam, coef = best
    f = laguerre.features(ds.inputs, alpha, N_FUNCS)
    return VolterraLaguerre(alpha, lam, coef, _predict(f, coef).astype(np.float32),
                            f.astype(np.float32), float(r))


def results_path(fingerprint: str) -> Path:
    """Where the rows of `run` are kept for a dataset (the report reads them)."""
    return cache_root() / "baselines" / f"{fingerprint[:20]}.json"


INPUT_ALPHAS = (0.8, 0.9, 0.95, 0.98)
"""Poles of the input baseline's banks, fast to slow memory, beside the fitted model's own."""


def _terms(f: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(…, 20, 5) the fitted model's second-order terms per cell: the quadratic forms of its
    own drive, each neighbour's, the gain's, and own drive × gain."""
    lf = N_FUNCS
    ch = f.reshape(*f.shape[:-1], -1, lf)
    own = ch[..., :N_CELLS, :]
    blocks = (own, np.roll(own, 1, axis=-2), np.roll(own, -1, axis=-2),
              np.broadcast_to(ch[..., N_CELLS:, :], own.shape))
    iu = np.triu_indices(lf)
    pos, out = 1 + 4 * lf, []
    for v in blocks:
        q = np.zeros((lf, lf))
        q[iu] = coef[pos : pos + len(iu[0])]
        out.append(np.einsum("...i,ij,...j->...", v, q, v))
        pos += len(iu[0])
    cross = coef[pos : pos + lf * lf].reshape(lf, lf)
    out.append(np.einsum("...i,ij,...j->...", own, cross, blocks[3]))
    return np.stack(out, axis=-1)


def input_features(ds: Dataset, vl: VolterraLaguerre, stride: int = scoring.STRIDE
                   ) -> np.ndarray:
    """(N, ⌈T/stride⌉, F) what a linear probe of the inputs alone may use: Laguerre banks of
    all 21 inputs at several poles (and the fitted model's), and the fitted model's
    second-order terms. Every step is filtered; every stride-th is kept."""
    alphas = sorted({*INPUT_ALPHAS, vl.alpha})
    parts = [laguerre.features(ds.inputs, a, N_FUNCS)[:, ::stride].astype(np.float32)
             for a in alphas]
    f = laguerre.features(ds.inputs, vl.alpha, N_FUNCS)[:, ::stride]
    parts.append(_terms(f, vl.coef).reshape(*f.shape[:2], -1).astype(np.float32))
    return np.concatenate(parts, axis=-1)


def input_baseline(ds: Dataset) -> tuple[VolterraLaguerre, scoring.Fit]:
    """The VL fit and the probes of the input features (on selection and test trials),
    cached by dataset fingerprint."""
    key = hashlib.sha256(f"{ds.meta['fingerprint']}|{ALPHAS}|{N_FUNCS}|{LAMBDAS}|"
                         f"{INPUT_ALPHAS}|{scoring.STRIDE}|{scoring.RIDGE_ALPHAS.tolist()}"
                         .encode())
    path = cache_root() / "input_baseline" / f"{key.hexdigest()[:20]}.npz"
    if path.exists():
        with np.load(path) as z:
            alpha, lam, coef, val_corr = (z[k] for k in ("alpha", "lam", "coef", "val"))
            fit = scoring.Fit({k: z[f"on_{k}"] for k in ("selection", "test")})
        f = laguerre.features(ds.inputs, float(alpha), N_FUNCS)
        vl = VolterraLaguerre(float(alpha), float(lam), coef,
                              _predict(f, coef).astype(np.float32), f.astype(np.float32),
                              float(val_corr))
        return vl, fit
    vl = fit_volterra_laguerre(ds)
    fit = scoring.probe(input_features(ds, vl), ds.biovars[:, ::scoring.STRIDE],
                        ds.meta["split"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, alpha=vl.alpha, lam=vl.lam, coef=vl.coef, val=vl.val_corr,
             **{f"on_{k}": v for k, v in fit.on.items()})
    return vl, fit


class LSTMBaseline(nn.Module):
    """An LSTM in the model contract: latents are its hidden states."""

    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.lstm = nn.LSTM(n_inputs, latent_dim, batch_first=True)
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        hc = None if state is None else tuple(s[None].contiguous() for s in state.chunk(2, -1))
        h, (hn, cn) = self.lstm(x, hc)
        return self.readout(h), h, torch.cat([hn[0], cn[0]], dim=-1)


SEED_REFERENCE = {
    "volterra_laguerre": (0.549, 89),
    "lstm": (0.451, 20),
    "plain_node": (0.012, None),
}


def run(
    ds: Dataset,
    cfg: TrainConfig,
    *,
    latent_dim: int = 64,
    threshold: float = 0.5,
    margin: float = 0.05,
    progress: Callable[[str, int, int, float, float], None] | None = None,
) -> list[dict]:
    """Score the three baselines on selection and on test trials; one row per baseline.

    Baselines are not searched, so their test figures may be shown at once. Each row is
    compared with the trusted random network of its own latent width and the input
    baseline; the trained ones also with their untrained null (``cfg.null_seeds`` seeds)."""
    split, variables = ds.meta["split"], ds.meta["variables"]
    vl, inputs_fit = input_baseline(ds)

    def scored(pred, latents, nulls=()) -> dict:
        width = latents.shape[-1]
        random = scoring.probe(controls.random_network_latents(ds.inputs, width,
                                                               ds.meta["dt_ms"]),
                               ds.biovars, split, stride=scoring.STRIDE)
        null = tuple(scoring.probe(z, ds.biovars, split, stride=scoring.STRIDE) for z in nulls)
        m = scoring.measure(pred, latents[:, ::scoring.STRIDE], ds.outputs, ds.biovars, split,
                            scoring.Controls(null, random, inputs_fit), regimes=ds.regimes())
        return {on: m.scores(variables, on, threshold, margin).to_dict()
                for on in ("selection", "test")}

    rows = []
    t0 = time.monotonic()
    rows.append({"name": "volterra_laguerre", **scored(vl.predictions, vl.latents),
                 "failure": None, "wall_s": round(time.monotonic() - t0, 1),
                 "detail": {"alpha": vl.alpha, "lambda": vl.lam}})
    t0_src = template_sources()["T0"]
    trained = [("lstm", LSTMBaseline, "direct", None),
               ("plain_node", load_candidate(t0_src)[1], "adjoint", t0_src)]
    targets = ds.training_outputs()
    for name, model_cls, strategy, src in trained:
        cb = None if progress is None else (lambda *a, n=name: progress(n, *a))
        ev = evaluate(model_cls, ds.inputs, targets, split, strategy, cfg,
                      latent_dim=latent_dim, source=src, progress=cb)
        row = {"name": name, "failure": ev.record.failure, "wall_s": ev.record.wall_s,
               "detail": {"epochs": ev.record.epochs, "strategy": ev.record.strategy,
                          "note": ev.record.strategy_note,
                          "failure_message": ev.record.failure_message}}
        if ev.predictions is not None and ev.record.failure is None:
            row.update(scored(ev.predictions, ev.latents, ev.null_latents))
        rows.append(row)
    path = results_path(ds.meta["fingerprint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return rows
