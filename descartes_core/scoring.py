"""Scoring a model from the arrays it returned: pure functions of arrays, on one split.

- Probes: for each of the 160 variables a ridge regression from the latents at the
  same time step (every ``stride``-th step), fit on train trials with the penalty
  chosen per variable on validation trials, evaluated on the *selection* trials
  (what the search decides from) or the *test* trials (locked until the finalists
  are scored). Latents are z-scored with train statistics, so one penalty grid fits
  every model. Spike r is the mean over the 20 channels of Pearson r between
  predicted and true output on the same trials.
- Each evaluation is kept as per-trial moments (n, Σa, Σb, Σa², Σb², Σab), from which
  r over the concatenated trials, and over any bootstrap resample of the trials,
  follows without refitting; every count gets a percentile interval over
  ``BOOTSTRAP`` resamples. The resamples are fixed (``BOOTSTRAP_SEED`` and the number
  of trials), so replicate k of two models saw the same trials: paired, which is how
  `agent.standing` asks whether one model beats another by more than noise.
- Controls (``Controls``): the candidate's own untrained model at several
  initialisation seeds (the null: per variable the best seed; it runs candidate
  code, so it can be gamed), a seeded random recurrent network of the same width
  run on the host (``descartes_core.controls``) and the input baseline (Laguerre
  banks and Volterra–Laguerre terms, ``descartes_core.baselines``). A variable is
  *beyond controls* when r ≥ threshold and r exceeds every control's r by at least
  ``margin``; ``above_null``, ``beyond_random`` and ``beyond_inputs`` count the
  recovered variables one control does not recover.
- Self-readout: how well a ridge readout of the latents predicts the model's own
  outputs (near 1: these are the states that make the output; low: a side channel).
- CCA: regularised canonical correlation between latents and biovars, fit on train
  trials; the mean of the first ``CCA_COMPONENTS`` canonical correlations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from descartes_core import events

RIDGE_ALPHAS = np.logspace(-3, 4, 15)
NEAR_MISS = 0.3
CCA_COMPONENTS = 10
CCA_REG = 1e-3
STRIDE = 5
BOOTSTRAP = 500
BOOTSTRAP_SEED = 0
INTERVAL = 0.95
COUNTS = ("recovered", "beyond_controls", "above_null", "beyond_random", "beyond_inputs")
"""The counts every score carries, each with its interval; the objectives are these."""


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two (samples, k) arrays; 0 where one is constant."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    num = (a * b).sum(axis=0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)


def moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_trials, 6, k) per-trial sums n, Σa, Σb, Σa², Σb², Σab of (n_trials, t, k) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = np.full((a.shape[0], a.shape[2]), a.shape[1], dtype=np.float64)
    return np.stack([n, a.sum(1), b.sum(1), (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)],
                    axis=1)


def r_of(m: np.ndarray) -> np.ndarray:
    """Pearson r from summed moments (..., 6, k); 0 where either side is constant (its
    variance is rounding error against its second moment)."""
    n, sa, sb, saa, sbb, sab = (m[..., i, :] for i in range(6))
    va, vb, cov = saa - sa * sa / n, sbb - sb * sb / n, sab - sa * sb / n
    ok = (va > 1e-10 * saa + 1e-300) & (vb > 1e-10 * sbb + 1e-300)
    den = np.sqrt(np.where(ok, va * vb, 1.0))
    return np.where(ok, cov / den, 0.0)


def resamples(n_trials: int, b: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(b, n_trials) bootstrap counts of trials; the same for every model on these trials."""
    rng = np.random.default_rng([seed, n_trials])
    return rng.multinomial(n_trials, np.full(n_trials, 1.0 / n_trials), size=b).astype(
        np.float64)


@dataclass(frozen=True)
class Fit:
    """Held-out predictions of something against its targets, kept as per-trial moments."""

    on: dict[str, np.ndarray]
    """Split name → (n_trials, 6, k) moments of that split's trials."""

    def r(self, split: str) -> np.ndarray:
        """(k,) r over the split's concatenated trials."""
        return r_of(self.on[split].sum(axis=0))

    def replicates(self, split: str) -> np.ndarray:
        """(BOOTSTRAP, k) r over each fixed resample of the split's trials."""
        m = self.on[split]
        return r_of(np.einsum("bn,nmk->bmk", resamples(len(m)), m))


def _trials(arr, trials, stride: int) -> np.ndarray:
    return np.asarray(arr[np.asarray(trials, dtype=np.intp)][:, ::stride], dtype=np.float64)


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


def ridge(x, y, split: dict, on: tuple[str, ...] = ("selection", "test"),
          stride: int = STRIDE) -> Fit:
    """Ridge probes from x (N, T, d) to each column of y (N, T, k): fit on train, penalty
    per column on validation, evaluated on the splits `on`."""
    x_tr, y_tr = _flat(_trials(x, split["train"], stride)), _flat(_trials(y, split["train"],
                                                                         stride))
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd[sd < 1e-8] = np.inf  # a constant latent carries nothing
    y_mu = y_tr.mean(axis=0)
    u, s, vt = np.linalg.svd((x_tr - mu) / sd, full_matrices=False)
    uty = u.T @ (y_tr - y_mu)
    x_val = (_flat(_trials(x, split["val"], stride)) - mu) / sd
    y_val = _flat(_trials(y, split["val"], stride))
    best_r = np.full(y_tr.shape[1], -np.inf)
    best_w = np.zeros((x_tr.shape[1], y_tr.shape[1]))
    for alpha in RIDGE_ALPHAS:
        w = vt.T @ ((s / (s * s + alpha * len(x_tr)))[:, None] * uty)
        r = pearson_columns(x_val @ w, y_val)
        better = r > best_r
        best_r[better] = r[better]
        best_w[:, better] = w[:, better]
    out = {}
    for name in on:
        x_on = (_trials(x, split[name], stride) - mu) / sd
        out[name] = moments(x_on @ best_w + y_mu, _trials(y, split[name], stride))
    return Fit(out)


def probe(latents, biovars, split: dict, on: tuple[str, ...] = ("selection", "test"),
          stride: int = STRIDE) -> Fit:
    """The 160 probes of the biological variables from a model's latents."""
    return ridge(latents, biovars, split, on, stride)


def probe_correlations(latents, biovars, split: dict, on: str = "selection",
                       stride: int = STRIDE) -> np.ndarray:
    """Held-out Pearson r of a ridge probe from the latents, per variable, on split `on`."""
    return probe(latents, biovars, split, (on,), stride).r(on)


def outputs_fit(pred, outputs, split: dict, on: tuple[str, ...] = ("selection", "test")
                ) -> Fit:
    """Predicted against true outputs per channel, at full time resolution."""
    return Fit({k: moments(_trials(pred, split[k], 1), _trials(outputs, split[k], 1))
                for k in on})


def spike_correlation(pred: np.ndarray, outputs: np.ndarray, trials: np.ndarray) -> float:
    """Mean over output channels of Pearson r on the concatenated `trials`."""
    return float(r_of(moments(_trials(pred, trials, 1), _trials(outputs, trials, 1))
                      .sum(axis=0)).mean())


def self_readout(latents, pred, split: dict, on: str = "selection",
                 stride: int = STRIDE) -> float:
    """Mean r over channels of a ridge readout from the latents to the model's own outputs."""
    return float(ridge(latents, pred, split, (on,), stride).r(on).mean())


def cca_score(latents, biovars, split: dict, on: str = "selection", stride: int = STRIDE,
              k: int = CCA_COMPONENTS) -> float:
    """Mean of the first k held-out canonical correlations between latents and biovars."""
    x_tr, y_tr = _flat(_trials(latents, split["train"], stride)), _flat(
        _trials(biovars, split["train"], stride))
    x_te, y_te = _flat(_trials(latents, split[on], stride)), _flat(
        _trials(biovars, split[on], stride))
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


@dataclass(frozen=True)
class Controls:
    """What a model's probes are compared with (each optional: a baseline has no null)."""

    null: tuple[Fit, ...] = ()
    """The model's own untrained latents, one fit per initialisation seed."""
    random: Fit | None = None
    """The trusted control: a seeded random network of the model's width, run on the host."""
    inputs: Fit | None = None
    """The input baseline's features."""


@dataclass
class Scores:
    """Everything scoring reports for one model on one split; JSON-ready through ``to_dict``."""

    on: str
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
    margin: float
    beyond_controls: int
    controls_max: list[float]
    """Per variable, the best control's r (the bar `margin` is added to)."""
    intervals: dict[str, list[float]]
    """Each count and spike_corr: the [lo, hi] percentile interval over the resamples."""
    replicates: dict[str, list[int]]
    """Each count on every fixed resample (paired across models on the same trials)."""
    self_readout: float | None = None
    null_seeds: int = 0
    null_recovered: int | None = None
    above_null: int | None = None
    random_recovered: int | None = None
    beyond_random: int | None = None
    input_recovered: int | None = None
    beyond_inputs: int | None = None
    gain_over_inputs: list[float] | None = None
    events: dict | None = None
    """descartes_core.events.event_scores on this split: does the rate commit to bursts."""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.quantile(values, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def verdict(fit: Fit, spikes: Fit, controls: Controls, variables: list[dict], *, on: str,
            threshold: float = 0.5, margin: float = 0.05, cca: float = float("nan"),
            self_readout: float | None = None, latent_dim: int = 0,
            events: dict | None = None) -> Scores:
    """Counts, per-variable r, intervals and controls of a model on split `on`."""
    r, r_b = fit.r(on), fit.replicates(on)  # (k,), (B, k)
    ctl = {}  # control name → (its r, its replicates)
    if controls.null:
        ctl["null"] = (np.max([f.r(on) for f in controls.null], axis=0),
                       np.max([f.replicates(on) for f in controls.null], axis=0))
    if controls.random is not None:
        ctl["random"] = (controls.random.r(on), controls.random.replicates(on))
    if controls.inputs is not None:
        ctl["inputs"] = (controls.inputs.r(on), controls.inputs.replicates(on))

    def counts(r, c) -> dict[str, np.ndarray]:  # r (..., k); c: control → (..., k)
        rec = r >= threshold
        bar = np.max([v for v in c.values()], axis=0) if c else np.full_like(r, -np.inf)
        out = {"recovered": rec.sum(-1), "beyond_controls": (rec & (r >= bar + margin)).sum(-1)}
        for name, key in (("null", "above_null"), ("random", "beyond_random"),
                          ("inputs", "beyond_inputs")):
            if name in c:
                out[key] = (rec & (c[name] < threshold)).sum(-1)
        return out

    point = counts(r, {k: v[0] for k, v in ctl.items()})
    boot = counts(r_b, {k: v[1] for k, v in ctl.items()})
    spike_b = spikes.replicates(on).mean(axis=1)
    intervals = {k: _interval(v) for k, v in boot.items()} | {"spike_corr": _interval(spike_b)}
    rec = r >= threshold
    by_cat: dict[str, int] = {}
    by_ts: dict[str, int] = {}
    for v, ok in zip(variables, rec, strict=True):
        by_cat[v["category"]] = by_cat.get(v["category"], 0) + int(ok)
        by_ts[v["timescale"]] = by_ts.get(v["timescale"], 0) + int(ok)
    bar = np.max([v[0] for v in ctl.values()], axis=0) if ctl else np.full_like(r, np.nan)
    s = Scores(
        on=on, spike_corr=float(spikes.r(on).mean()), latent_dim=latent_dim,
        recovered=int(point["recovered"]),
        near_misses=[v["name"] for v, x in zip(variables, r, strict=True)
                     if NEAR_MISS <= x < threshold],
        by_category=by_cat, by_timescale=by_ts, cca=cca,
        correlations=[round(float(x), 5) for x in r], recovered_vector=[bool(x) for x in rec],
        threshold=threshold, margin=margin, beyond_controls=int(point["beyond_controls"]),
        controls_max=[round(float(x), 5) for x in bar], intervals=intervals,
        replicates={k: [int(x) for x in v] for k, v in boot.items()},
        self_readout=self_readout, null_seeds=len(controls.null), events=events)
    if "null" in ctl:
        s.null_recovered = int((ctl["null"][0] >= threshold).sum())
        s.above_null = int(point["above_null"])
    if "random" in ctl:
        s.random_recovered = int((ctl["random"][0] >= threshold).sum())
        s.beyond_random = int(point["beyond_random"])
    if "inputs" in ctl:
        s.input_recovered = int((ctl["inputs"][0] >= threshold).sum())
        s.beyond_inputs = int(point["beyond_inputs"])
        s.gain_over_inputs = [round(float(x), 5) for x in r - ctl["inputs"][0]]
    return s


@dataclass(frozen=True)
class Measurement:
    """A model's fits on the selection and test trials: what `verdict` scores on either.
    The search only ever scores ``on="selection"``; the test moments stay sealed until
    the finalists are scored."""

    probes: Fit
    spikes: Fit
    controls: Controls
    latent_dim: int
    cca: dict[str, float]
    self_readout: dict[str, float]
    events: dict[str, dict] = field(default_factory=dict)

    def scores(self, variables: list[dict], on: str, threshold: float = 0.5,
               margin: float = 0.05) -> Scores:
        return verdict(self.probes, self.spikes, self.controls, variables, on=on,
                       threshold=threshold, margin=margin, cca=self.cca[on],
                       self_readout=self.self_readout[on], latent_dim=self.latent_dim,
                       events=self.events.get(on))

    def save(self, path, split: str = "test") -> None:
        """One split's moments (everything `scores(on=split)` needs) as an .npz file."""
        c = self.controls
        fits = {"probes": self.probes, "spikes": self.spikes,
                **{f"null{i}": f for i, f in enumerate(c.null)},
                **({"random": c.random} if c.random else {}),
                **({"inputs": c.inputs} if c.inputs else {})}
        np.savez(path, latent_dim=self.latent_dim, cca=self.cca[split],
                 self_readout=self.self_readout[split], split=split,
                 events=json.dumps(self.events.get(split)),
                 **{k: f.on[split] for k, f in fits.items()})

    @classmethod
    def load(cls, path) -> Measurement:
        with np.load(path, allow_pickle=False) as z:
            split = str(z["split"])

            def fit(key):
                return Fit({split: z[key]}) if key in z.files else None

            nulls = tuple(Fit({split: z[k]}) for k in sorted(
                (k for k in z.files if k.startswith("null")), key=lambda k: int(k[4:])))
            return cls(fit("probes"), fit("spikes"), Controls(nulls, fit("random"),
                                                              fit("inputs")),
                       int(z["latent_dim"]), {split: float(z["cca"])},
                       {split: float(z["self_readout"])}, _events(z, split))


def _events(z, split: str) -> dict[str, dict]:
    """The event scores of a saved split (none in files sealed before they existed)."""
    found = json.loads(str(z["events"])) if "events" in z.files else None
    return {split: found} if isinstance(found, dict) else {}


def measure(pred, latents, outputs, biovars, split: dict, controls: Controls,
            on: tuple[str, ...] = ("selection", "test"), regimes=None) -> Measurement:
    """Fit a model's probes, spikes, CCA and self-readout, and score its events, for the
    splits `on` (`regimes`: each trial's regime name, for the per-regime spike r).

    pred, outputs: (N, T, 20); biovars (N, T, 160); latents (N, ⌈T/STRIDE⌉, d), every
    STRIDE-th step (what the sandbox returns: the probes read no other step)."""
    bio, pred_s = biovars[:, ::STRIDE], pred[:, ::STRIDE]
    if latents.shape[1] != bio.shape[1]:
        raise ValueError(f"latents have {latents.shape[1]} steps, expected every "
                         f"{STRIDE}th of {biovars.shape[1]}")
    return Measurement(
        probes=probe(latents, bio, split, on, 1),
        spikes=outputs_fit(pred, outputs, split, on), controls=controls,
        latent_dim=int(latents.shape[-1]),
        cca={k: cca_score(latents, bio, split, k, 1) for k in on},
        self_readout={k: self_readout(latents, pred_s, split, k, 1) for k in on},
        events={k: events.event_scores(pred, outputs, split[k], regimes) for k in on})
