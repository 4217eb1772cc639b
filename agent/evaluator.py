"""The evaluator: a candidate's source in, a check outcome or a measured result out.

The sandbox builds, shape-checks and trains the candidate; scoring stays on the
trusted side. The sandbox is handed the inputs of every trial and the outputs of the
train and validation trials only (selection and test outputs are zeroed before they
leave this process), and, for a candidate that declares distillation, the teacher: the
input baseline's Volterra–Laguerre predictions of the same trials. The controls are
computed here: the input baseline's probes (cached per dataset) and the trusted random
network of each latent width. A result is scored on the selection trials; its test-trial
moments are returned sealed, for the finalists alone. `descartes-agent replay` uses the
same evaluator, so a replayed score is computed exactly as the recorded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent import executor
from descartes_core import baselines, contract, controls, scoring
from descartes_core.dataset import Dataset
from sandbox import policy, process, runner


@dataclass
class Result:
    """What one training of a candidate came to."""

    status: str
    """scored (training succeeded) or failed."""
    record: dict
    isolation: str
    train_hours: float
    """The host's wall clock of the job: what budgets count."""
    failure_kind: str | None = None
    failure_message: str | None = None
    scores: dict | None = None
    """Scores on the selection trials (scoring.Scores as a dict), only when scored."""
    sealed: scoring.Measurement | None = field(default=None, repr=False)
    """The measurement with its test moments: read only when the candidate is a finalist."""

    def fields(self) -> dict:
        """The iteration fields the ledger keeps."""
        out = {"status": self.status, "train_hours": self.train_hours,
               "failure_kind": self.failure_kind, "failure_message": self.failure_message}
        if self.scores is not None:
            s = self.scores
            out.update(scores=s, recovered=s["recovered"], above_null=s["above_null"],
                       beyond_inputs=s["beyond_inputs"], beyond_controls=s["beyond_controls"],
                       spike_corr=s["spike_corr"])
        return out


def training_summary(record: dict) -> dict | None:
    """What the architect's history and the patterns read of a training: the strategy
    actually trained (a fallback's note), the epochs it got and what stopped it."""
    if not record:
        return None
    return {"strategy": record.get("strategy"), "note": record.get("strategy_note"),
            "loss": record.get("loss"), "loss_note": record.get("loss_note"),
            "compile": record.get("compile"),
            "epochs": record.get("epochs"), "stopped_by": record.get("stopped_by"),
            "n_params": record.get("n_params")}


def as_trained(it: dict) -> dict:
    """The iteration with its gradient strategy and loss as trained, not as declared."""
    training = it.get("training") or {}
    props = it.get("properties")
    if not isinstance(props, dict):
        return it
    trained = {axis: training[key] for axis, key in (("gradient_strategy", "strategy"),
                                                     ("loss", "loss")) if training.get(key)}
    if all(props.get(k) == v for k, v in trained.items()):
        return it
    return {**it, "properties": {**props, **trained}}


class Evaluator:
    def __init__(self, ds: Dataset, *, backend: str, latent_dim: int = 64,
                 threshold: float = 0.5, margin: float = 0.05, train: dict | None = None):
        self.ds, self.backend, self.latent_dim = ds, backend, latent_dim
        self.threshold, self.margin = threshold, margin
        self.train_config = dict(train or {})
        vl, self.inputs_fit = baselines.input_baseline(ds)
        self.targets = ds.training_outputs()  # the sandbox never sees selection or test outputs
        self.counts, self.no_counts = ds.training_counts()  # nor their spikes
        hidden = np.concatenate([ds.split("selection"), ds.split("test")])
        self.teacher = vl.predictions.copy()
        self.teacher[hidden] = 0.0
        self.split = {k: ds.meta["split"][k] for k in ("train", "val")}
        self._random: dict[int, scoring.Fit] = {}

    def settings(self) -> dict:
        """What `replay` needs to redo an evaluation exactly."""
        return {"train": self.train_config, "latent_dim": self.latent_dim,
                "threshold": self.threshold, "margin": self.margin, "sandbox": self.backend}

    def random_fit(self, width: int) -> scoring.Fit:
        """The trusted control's probes at a latent width (computed once per width)."""
        if width not in self._random:
            z = controls.random_network_latents(self.ds.inputs, width, self.ds.meta["dt_ms"])
            self._random[width] = scoring.probe(z, self.ds.biovars, self.ds.meta["split"],
                                                stride=scoring.STRIDE)
        return self._random[width]

    def width(self, source: str) -> int:
        """The latent width a source is built with: its declared LATENT_DIM (at most
        contract.MAX_LATENT_DIM, which the policy holds), else the run's."""
        return contract.source_width(source, self.latent_dim)

    def check(self, source: str, library: dict[str, str] | None = None) -> dict:
        """{"ok", "error": {"kind", "message"} | None, "check", "isolation"}; the source may
        import the blocks of `library` (name → file)."""
        out = runner.check(source, latent_dim=self.width(source), backend=self.backend,
                           library=library)
        return {"ok": out.ok, "error": out.error, "check": out.check, "isolation": out.isolation}

    def workload(self) -> executor.Workload:
        """What every training of this run shares, for the executor to send once."""
        return executor.Workload(self.ds.inputs, self.targets, self.teacher, self.counts,
                                 self.split, self.train_config, self.backend)

    def job(self, source: str, key: str, seed: int | None = None,
            library: dict[str, str] | None = None) -> executor.Job:
        """A training of `source` (with `seed` instead of the run's, for a finalist's
        reruns), with the library blocks it imports: its width, and whether it gets the
        teacher (distillation) and the spike counts (a count loss)."""
        props = policy.check(source, library=frozenset(library or {})).properties or {}
        return executor.Job(key, source, self.width(source), seed,
                            teacher=props.get("gradient_strategy") == "distillation",
                            counts=props.get("loss") in contract.COUNT_LOSSES,
                            library=tuple((library or {}).items()))

    def train(self, source: str, progress=None, seed: int | None = None,
              library: dict[str, str] | None = None) -> runner.Outcome:
        """Train here and now (replay); `progress` receives each epoch's {epoch, total,
        train_loss, val_loss} as it ends. The search trains through its executor."""
        return executor.train_job(self.workload(), self.job(source, "now", seed, library),
                                  progress=progress)

    def measure(self, out: runner.Outcome) -> Result:
        """Status, selection scores and sealed test moments of a trained candidate (no
        sandbox is forked meanwhile: sandbox.process.FORK_LOCK)."""
        with process.FORK_LOCK:
            return self._measure(out)

    def _measure(self, out: runner.Outcome) -> Result:
        record = out.record or {}
        result = Result("failed", record, out.isolation, out.wall_s / 3600.0)
        if out.error or not out.arrays:
            err = out.error or {"kind": "runtime", "message": "the sandbox returned no arrays"}
            result.failure_kind, result.failure_message = err["kind"], err["message"][:2000]
            return result
        a = out.arrays
        ctl = scoring.Controls(
            null=tuple(scoring.probe(z, self.ds.biovars[:, ::scoring.STRIDE],
                                     self.ds.meta["split"], stride=1) for z in a["null_latents"]),
            random=self.random_fit(a["latents"].shape[-1]), inputs=self.inputs_fit)
        try:
            m = scoring.measure(a["predictions"], a["latents"], self.ds.outputs, self.ds.biovars,
                                self.ds.meta["split"], ctl, regimes=self.ds.regimes())
            s = m.scores(self.ds.meta["variables"], "selection", self.threshold, self.margin)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError) as e:
            result.failure_kind = "nan"
            result.failure_message = f"its latents cannot be scored ({type(e).__name__}: {e})"[
                :500]
            return result
        result.status, result.scores, result.sealed = "scored", s.to_dict(), m
        return result

    def final_scores(self, m: scoring.Measurement) -> dict:
        """Scores on the locked test trials: for finalists and `replay` only."""
        return m.scores(self.ds.meta["variables"], "test", self.threshold, self.margin).to_dict()
