"""The evaluator: a candidate's source in, a check outcome or scores out.

The sandbox builds, shape-checks and trains the candidate; scoring stays on the
trusted side, on held-out trials, beside the untrained null, the trusted control (a
seeded random network of the same width, run here, not by candidate code) and the input
baseline.
The sandbox is handed the train and validation outputs only: the test trials'
outputs are zeroed before they leave this process. `descartes-agent replay` uses the
same evaluator, so a replayed score is computed exactly as the recorded one.
"""

from __future__ import annotations

import numpy as np

from descartes_core import baselines, controls, scoring
from descartes_core.dataset import Dataset
from sandbox import runner


class Evaluator:
    def __init__(self, ds: Dataset, *, backend: str, latent_dim: int = 64,
                 threshold: float = 0.5, train: dict | None = None):
        self.ds, self.backend, self.latent_dim = ds, backend, latent_dim
        self.threshold, self.train_config = threshold, dict(train or {})
        _, self.input_r = baselines.input_baseline(ds)
        self.control_r = scoring.probe_correlations(
            controls.random_network_latents(ds.inputs, latent_dim, ds.meta["dt_ms"]),
            ds.biovars, ds.meta["split"])
        self.targets = ds.training_outputs()  # the sandbox never sees test outputs
        self.split = {k: ds.meta["split"][k] for k in ("train", "val")}

    def settings(self) -> dict:
        """What `replay` needs to redo an evaluation exactly."""
        return {"train": self.train_config, "latent_dim": self.latent_dim,
                "threshold": self.threshold, "sandbox": self.backend}

    def check(self, source: str) -> dict:
        """{"ok", "error": {"kind", "message"} | None, "check", "isolation"}."""
        out = runner.check(source, latent_dim=self.latent_dim, backend=self.backend)
        return {"ok": out.ok, "error": out.error, "check": out.check, "isolation": out.isolation}

    def train(self, source: str, progress=None) -> runner.Outcome:
        """Train in the sandbox; `progress` receives each epoch's {epoch, total, train_loss,
        val_loss} as it ends."""
        return runner.evaluate(source, self.ds.inputs, self.targets, self.split,
                               latent_dim=self.latent_dim, train=self.train_config,
                               backend=self.backend, progress=progress)

    def score(self, out: runner.Outcome) -> dict:
        """Status, scores (or failure), record and train_hours of a trained candidate."""
        record = out.record or {}
        result = {"record": record, "train_hours": out.wall_s / 3600.0,  # the host's clock
                  "isolation": out.isolation}
        if not out.arrays:
            err = out.error or {"kind": "runtime", "message": "the sandbox returned no arrays"}
            return {**result, "status": "failed", "failure_kind": err["kind"],
                    "failure_message": err["message"]}
        try:
            s = scoring.score(out.arrays["predictions"], out.arrays["latents"], self.ds.outputs,
                              self.ds.biovars, self.ds.meta, threshold=self.threshold,
                              null_latents=out.arrays["null_latents"],
                              control_r=self.control_r, input_r=self.input_r)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError) as e:
            return {**result, "status": "failed", "failure_kind": "nan", "failure_message":
                    f"its latents cannot be scored ({type(e).__name__}: {e})"[:500]}
        result.update(status="scored", scores=s.to_dict(), recovered=s.recovered,
                      above_null=s.above_null, beyond_inputs=s.beyond_inputs,
                      spike_corr=s.spike_corr)
        if out.error:  # scored, but training stopped early (noted, not fatal)
            result.update(failure_kind=out.error["kind"], failure_message=out.error["message"])
        return result
