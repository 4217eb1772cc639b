"""The search loop: templates, then architect expansions, each checked, committed, trained,
scored and fed back.

Per candidate: duplicate check (normalised-source hash) → static policy and sandboxed
shape check, with up to ``max_repairs`` repairs by the same architect → a branch in the
model repository → sandboxed training → scoring on the trusted side against the null
and the input baseline → results on the branch, a ledger row, gap and patterns for the
next prompt. Failures are iterations too, with their class and message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from agent.dedup import source_hash
from agent.ledger import Ledger
from agent.offline import OfflineArchitect
from agent.prompt import Proposal
from agent.repository import ModelRepository
from descartes_core import baselines, gap, patterns, scoring
from descartes_core.contract import template_sources
from descartes_core.dataset import Dataset
from sandbox import policy, runner


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made of; stored with the run so that it can be resumed."""

    run_dir: str = "runs"
    """Folder holding one sub-folder per run (model repository, ledger)."""
    templates: tuple[str, ...] = ("T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8")
    """Templates of phase 1."""
    max_expansions: int = 10
    """Architect proposals of phase 2."""
    target: int = 120
    """Stop when the objective reaches this many variables."""
    objective: str = "recovered"
    """recovered, above_null or beyond_inputs: what counts as improvement."""
    patience: int = 3
    """Stop after this many expansions without improvement."""
    max_total_hours: float = 48.0
    """Stop when training time, all candidates together, exceeds this."""
    max_repairs: int = 2
    """Repairs of a candidate rejected by the policy or the shape check."""
    sandbox: str = "auto"
    """auto, docker or process."""
    latent_dim: int = 64
    """latent_dim every candidate is built with."""
    threshold: float = 0.5
    """Held-out r that counts as recovered."""
    seed: int = 0
    """Seed of training and of the offline architect."""
    train: dict = field(default_factory=dict)
    """TrainConfig overrides (time_budget_h, max_epochs, …)."""


@dataclass
class RunState:
    run_id: str
    iterations: list[dict] = field(default_factory=list)
    best: dict | None = None
    hours: float = 0.0


def _objective(scores: dict, name: str) -> int:
    return int(scores.get(name) or 0)


class Orchestrator:
    def __init__(self, cfg: RunConfig, ds: Dataset, run_id: str | None = None,
                 architect=None, log: Callable[[str], None] = print):
        self.cfg, self.ds, self.log = cfg, ds, log
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
        self.dir = Path(cfg.run_dir) / self.run_id
        self.repo = ModelRepository(self.dir / "models")
        self.ledger = Ledger(self.dir / "ledger.sqlite")
        self.ledger.start_run(self.run_id, asdict(cfg), ds.meta["fingerprint"])
        self.architect = architect or OfflineArchitect(cfg.seed)
        self.backend = runner.resolve_backend(cfg.sandbox)
        _, self.input_r = baselines.input_baseline(ds)
        self.tried: set[str] = set()
        self.state = RunState(self.run_id)
        test = np.asarray(ds.meta["split"]["test"], dtype=np.intp)
        self.targets = ds.outputs.copy()
        self.targets[test] = 0.0  # the sandbox never sees test outputs
        self.split = {k: ds.meta["split"][k] for k in ("train", "val")}

    # one candidate ---------------------------------------------------------------------
    def _candidate(self, n: int, proposal: Proposal, architect: str, repair) -> dict:
        it = {"number": n, "name": proposal.name, "architect": architect,
              "properties": proposal.properties, "reasoning": proposal.reasoning}
        attempts = 0
        while True:
            digest = source_hash(proposal.source)
            if digest in self.tried:
                check = {"ok": False, "error": {"kind": "duplicate", "message":
                         "this source (normalised) was tried before: propose something new"}}
            else:
                out = runner.check(proposal.source, latent_dim=self.cfg.latent_dim,
                                   backend=self.backend)
                check = {"ok": out.ok, "error": out.error, "check": out.check,
                         "isolation": out.isolation}
            self.tried.add(digest)
            if check["ok"] or repair is None or attempts >= self.cfg.max_repairs:
                break
            attempts += 1
            feedback = f"{check['error']['kind']}: {check['error']['message']}"
            self.log(f"  repair {attempts}: {feedback.splitlines()[0]}")
            proposal = repair(feedback)
            it.update(name=proposal.name, properties=proposal.properties,
                      reasoning=proposal.reasoning)
        it["repairs"] = attempts
        branch = self.repo.branch_name(n, proposal.name)
        files = {"model.py": proposal.source,
                 "proposal.json": json.dumps({**{k: it[k] for k in
                                                 ("name", "architect", "properties", "reasoning")},
                                              "repairs": attempts}, indent=1),
                 "check.json": json.dumps(check, indent=1)}
        verdict = "accepted" if check["ok"] else f"rejected ({check['error']['kind']})"
        it.update(branch=branch, commit_sha=self.repo.commit(
            branch, files, f"iteration {n}: {proposal.name} — check {verdict}"))
        if not check["ok"]:
            it.update(status="refused" if check["error"]["kind"] == "duplicate" else "failed",
                      failure_kind=check["error"]["kind"],
                      failure_message=check["error"]["message"][:2000])
            return it
        out = runner.evaluate(proposal.source, self.ds.inputs, self.targets, self.split,
                              latent_dim=self.cfg.latent_dim,
                              train={"seed": self.cfg.seed, **self.cfg.train},
                              backend=self.backend)
        record = out.record or {}
        it["train_hours"] = float(record.get("wall_s", 0.0)) / 3600.0
        if not out.arrays:
            err = out.error or {"kind": "runtime", "message": "no arrays"}
            it.update(status="failed", failure_kind=err["kind"], failure_message=err["message"])
        else:
            s = scoring.score(out.arrays["predictions"], out.arrays["latents"], self.ds.outputs,
                              self.ds.biovars, self.ds.meta, threshold=self.cfg.threshold,
                              null_latents=out.arrays["null_latents"], input_r=self.input_r)
            it.update(status="scored", scores=s.to_dict(), recovered=s.recovered,
                      above_null=s.above_null, beyond_inputs=s.beyond_inputs,
                      spike_corr=s.spike_corr)
            if out.error:
                it.update(failure_kind=out.error["kind"], failure_message=out.error["message"])
        results = {k: it.get(k) for k in ("status", "scores", "failure_kind", "failure_message")}
        results.update(record=record, seed=self.cfg.seed,
                       data_fingerprint=self.ds.meta["fingerprint"])
        summary = (f"recovered {it.get('recovered')}/160, above null {it.get('above_null')}, "
                   f"beyond inputs {it.get('beyond_inputs')}") if it["status"] == "scored" \
            else f"failed ({it.get('failure_kind')})"
        it["commit_sha"] = self.repo.commit(branch, {"results.json": json.dumps(results)},
                                            f"iteration {n}: {proposal.name} — {summary}")
        return it

    def _finish(self, it: dict, calls=()) -> bool:
        """Record the iteration; True when it improved on the best."""
        self.ledger.record_iteration(self.run_id, it, list(calls))
        self.state.iterations.append(it)
        self.state.hours += it.get("train_hours", 0.0)
        improved = False
        if it.get("scores"):
            score = _objective(it["scores"], self.cfg.objective)
            if self.state.best is None or score > _objective(self.state.best["scores"],
                                                             self.cfg.objective):
                self.state.best, improved = it, True
                self.repo.tag_best(it["branch"])
        self.log(f"#{it['number']:>3} {it['name']:<44} {it['status']:<8} "
                 + (f"recovered {it['recovered']}/160 (above null {it['above_null']}, beyond "
                    f"inputs {it['beyond_inputs']}), spike r {it['spike_corr']:.3f}"
                    if it.get("scores") else f"{it.get('failure_kind')}"))
        return improved

    def _gap(self) -> dict | None:
        scored = [i["scores"] for i in self.state.iterations if i.get("scores")]
        return gap.analyse(scored, self.ds.meta["variables"], self.cfg.target) if scored else None

    def _reached(self) -> bool:
        b = self.state.best
        return b is not None and _objective(b["scores"], self.cfg.objective) >= self.cfg.target

    # the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        n = 0
        sources = template_sources()
        stop = None
        for tid in self.cfg.templates:
            n += 1
            src = sources[tid]
            props = policy.check(src).properties or {}
            it = self._candidate(n, Proposal(tid, "template", props, src), "template", None)
            self._finish(it)
            if self._reached():
                stop = "target reached"
                break
        stale = 0
        for k in range(self.cfg.max_expansions if stop is None else 0):
            if self.state.hours > self.cfg.max_total_hours:
                stop = "time budget"
                break
            n += 1
            g = self._gap()

            def repair(feedback, k=k, g=g):
                return self.architect.propose(k, g, self.tried, feedback)

            proposal = self.architect.propose(k, g, self.tried)
            it = self._candidate(n, proposal, self.architect.name, repair)
            stale = 0 if self._finish(it) else stale + 1
            if self._reached():
                stop = "target reached"
                break
            if stale >= self.cfg.patience:
                stop = f"{stale} expansions without improvement"
                break
        self.ledger.set_status(self.run_id, "finished")
        best = self.state.best
        return {"run_id": self.run_id, "stop": stop or "expansions used",
                "iterations": len(self.state.iterations), "best": best and {
                    k: best.get(k) for k in ("name", "branch", "recovered", "above_null",
                                             "beyond_inputs", "spike_corr")},
                "patterns": patterns.mine(self._history(), self.ds.meta["variables"]),
                "gap": self._gap()}

    def _history(self) -> list[dict]:
        out = []
        for it in self.state.iterations:
            if it.get("scores"):
                src = self.repo.read(it["branch"], "model.py")
                out.append({**it, "source": src})
        return out
