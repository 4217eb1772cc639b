"""The search loop: templates, then architect expansions, each checked, committed, trained,
scored and fed back.

Per candidate: duplicate check (normalised-source hash) → static policy and sandboxed
shape check, with up to ``max_repairs`` repairs by the same architect → a branch in the
model repository → sandboxed training and trusted scoring (agent.evaluator) → results
on the branch, one ledger transaction, gap and patterns for the next brief. Failures
are iterations too, with their class and message.

Everything the loop decides from (best, stale expansions, exhausted families, hours,
cost, templates done) is derived from the ledger, so a run killed at any point resumes
where it stood: finished iterations are kept, the one in flight is redone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

from agent import finals
from agent.config import OBJECTIVES, RunConfig, new_run_id
from agent.dedup import skeleton_hash, source_hash
from agent.driver_lock import DriverLock
from agent.evaluator import Evaluator, as_trained, training_summary
from agent.ledger import Ledger
from agent.live import PlainLines
from agent.llm import ArchitectError
from agent.offline import OfflineArchitect
from agent.prompt import Brief, ParseError, Proposal
from agent.repository import ModelRepository
from agent.standing import Standing, eligible, ranked, standing
from descartes_core import gap, patterns
from descartes_core.contract import template_sources
from descartes_core.dataset import Dataset
from sandbox import policy, runner

ARCHITECT_FAILURES = 3  # in a row, before the offline architect takes over


class Orchestrator:
    def __init__(self, cfg: RunConfig, ds: Dataset, run_id: str | None = None,
                 architect=None, monitor=None):
        if cfg.objective not in OBJECTIVES:
            raise ValueError(f"objective {cfg.objective}: expected one of {', '.join(OBJECTIVES)}")
        self.cfg, self.ds = cfg, ds
        self.event = (monitor or PlainLines(print)).event
        self.run_id = run_id or new_run_id()
        self.dir = Path(cfg.run_dir) / self.run_id
        self.sealed = self.dir / "sealed"
        self.repo = ModelRepository(self.dir)
        self.lock = DriverLock(self.dir)  # RunLocked while another driver holds this run
        self.lock.acquire()
        try:
            self._open(cfg, ds, architect)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, cfg: RunConfig, ds: Dataset, architect) -> None:
        self.ledger = Ledger(self.dir / "ledger.sqlite")
        self.ledger.start_run(self.run_id, asdict(cfg), ds.meta["fingerprint"])
        self.architect = architect or OfflineArchitect(cfg.seed)
        self.backend = runner.resolve_backend(cfg.sandbox, cfg.allow_degraded)
        self.evaluator = Evaluator(ds, backend=self.backend, latent_dim=cfg.latent_dim,
                                   threshold=cfg.threshold, margin=cfg.margin,
                                   train={"seed": cfg.seed, "device": cfg.device, **cfg.train})
        self.failures = 0
        self.calls: list[dict] = []
        self.iterations = self.ledger.iterations(self.run_id)
        # a killed process may have left the iteration in flight half-committed: redo it
        self.repo.drop_after(max((it["number"] for it in self.iterations), default=0))
        self.tried = {a["source_hash"] for it in self.iterations
                      for a in it.get("attempts") or [] if a.get("source_hash")}
        # what earlier candidates computed, and their skeletons: the first iteration of each
        self.behaviours: dict[str, int] = {}
        self.skeletons: dict[str, int] = {}
        for it in self.iterations:
            for a in it.get("attempts") or []:
                if not a.get("kind"):  # accepted attempts only
                    self._remember(a, it["number"])
        best = self.standing.best
        if best:
            self.repo.tag_best(best["branch"])

    @property
    def standing(self) -> Standing:
        return standing(self.iterations, self.cfg.objective, self.cfg.target)

    @property
    def cost(self) -> float:
        return sum(c["cost_usd"] for c in self.ledger.calls(self.run_id))

    # one candidate ---------------------------------------------------------------------
    def _attempt(self, propose, feedback):
        """(proposal or None, check, attempt record) of one proposal."""
        try:
            proposal = propose(feedback)
        except ParseError as e:
            error = {"kind": "parse", "message": str(e)}
            return None, {"ok": False, "error": error, "reply": e.reply}, {
                "name": None, "source_hash": None, **error}
        self.event("activity", what="checking", name=proposal.name)
        digest = source_hash(proposal.source)
        if digest in self.tried:
            check = {"ok": False, "error": {"kind": "duplicate", "message":
                     "this source (normalised) was tried before: propose something new"}}
        else:
            check = self.evaluator.check(proposal.source)
        self.tried.add(digest)
        attempt = {"name": proposal.name, "source_hash": digest}
        if check["ok"]:
            check = self._behaviour(proposal.source, check, attempt)
        err = check["error"] or {}
        attempt.update(kind=err.get("kind"), message=err.get("message", "")[:1000])
        if proposal.notes:  # what the parser ignored (a header's disagreeing properties)
            attempt["notes"] = list(proposal.notes)
        return proposal, check, attempt

    def _behaviour(self, source: str, check: dict, attempt: dict) -> dict:
        """Refuse a candidate that computes exactly what an earlier one did (a renamed copy:
        the shape check's functional fingerprint); mark one that shares an earlier one's
        skeleton with only constants changed as its variant."""
        fp = (check.get("check") or {}).get("fingerprint")
        skeleton = skeleton_hash(source)
        attempt.update(fingerprint=fp, skeleton=skeleton)
        if fp and fp in self.behaviours:
            return {**check, "ok": False, "error": {"kind": "duplicate", "message": (
                f"this model computes exactly what iteration {self.behaviours[fp]} computes "
                "(same outputs and latents on a fixed input at a fixed initialisation): "
                "propose something that behaves differently")}}
        if skeleton in self.skeletons:
            attempt["variant_of"] = self.skeletons[skeleton]
        return check

    def _remember(self, attempt: dict, number: int) -> None:
        if attempt.get("fingerprint"):
            self.behaviours.setdefault(attempt["fingerprint"], number)
        if attempt.get("skeleton"):
            self.skeletons.setdefault(attempt["skeleton"], number)

    def _candidate(self, n: int, propose, max_repairs: int, architect: str | None = None) -> dict:
        attempts, feedback = [], None
        while True:
            proposal, check, attempt = self._attempt(propose, feedback)
            attempts.append(attempt)
            if check["ok"] or len(attempts) > max_repairs:
                break
            feedback = f"{attempt['kind']}: {attempt['message']}"
            self.event("repair", attempt=len(attempts), feedback=feedback)
        architect = architect or self.architect.name  # after a fallback: the offline one
        proposal = proposal or Proposal("unparsed-reply", "", {}, "")
        it = {"number": n, "name": proposal.name, "architect": architect,
              "properties": proposal.properties, "reasoning": proposal.reasoning,
              "repairs": len(attempts) - 1, "attempts": attempts,
              "variant_of": attempts[-1].get("variant_of")}
        if check["ok"]:
            self._remember(attempts[-1], n)
        calls = [c for c in self.calls if c.get("model")]  # the calls that were answered
        meta = {"prompt_hash": calls[-1]["prompt_hash"], "model": calls[-1].get("model"),
                "input_tokens": sum(c.get("input_tokens", 0) for c in calls),
                "output_tokens": sum(c.get("output_tokens", 0) for c in calls),
                "cost_usd": sum(c.get("cost_usd", 0.0) for c in calls)} if calls else {}
        branch = self.repo.branch_name(n, proposal.name)
        files = {"proposal.json": json.dumps({k: it[k] for k in (
                     "name", "architect", "properties", "reasoning", "repairs", "attempts",
                     "variant_of")}
                     | meta, indent=1),
                 "check.json": json.dumps({k: v for k, v in check.items() if k != "reply"},
                                          indent=1)}
        if proposal.source:
            files["model.py"] = proposal.source
        if check.get("reply"):
            files["reply.txt"] = check["reply"]
        verdict = "accepted" if check["ok"] else f"rejected ({check['error']['kind']})"
        it.update(branch=branch, commit_sha=self.repo.commit(
            branch, files, f"iteration {n}: {proposal.name} — check {verdict}"))
        if not check["ok"]:
            kind = check["error"]["kind"]
            it.update(status="refused" if kind == "duplicate" else "failed", failure_kind=kind,
                      failure_message=check["error"]["message"][:2000])
            return it
        self.event("activity", what="training", name=proposal.name, backend=self.backend)
        trained = self.evaluator.train(proposal.source,
                                       progress=lambda ep: self.event("epoch", **ep))
        self.event("activity", what="scoring", name=proposal.name)
        result = self.evaluator.measure(trained)
        it.update(result.fields(), training=training_summary(result.record))
        if result.sealed is not None:  # the test moments, read only if it becomes a finalist
            self.sealed.mkdir(exist_ok=True)
            result.sealed.save(self.sealed / f"{n:04d}.npz")
        results = {k: it.get(k) for k in ("status", "scores", "failure_kind", "failure_message")}
        results.update(record=result.record, isolation=result.isolation,
                       data_fingerprint=self.ds.meta["fingerprint"], **self.evaluator.settings())
        summary = (f"recovered {it['recovered']}/160 on selection trials, beyond controls "
                   f"{it['beyond_controls']}") if it["status"] == "scored" \
            else f"failed ({it.get('failure_kind')})"
        it["commit_sha"] = self.repo.commit(branch, {"results.json": json.dumps(results)},
                                            f"iteration {n}: {proposal.name} — {summary}")
        return it

    def _record(self, it: dict) -> None:
        """The iteration and its architect calls, in one ledger transaction."""
        self.ledger.record_iteration(self.run_id, it, self.calls)
        self.calls = []
        self.iterations = self.ledger.iterations(self.run_id)
        s = self.standing
        new_best = s.best is not None and s.best["number"] == it["number"]
        if new_best:
            self.repo.tag_best(it["branch"])
        self.event("recorded", iteration=it, new_best=new_best, best=s.best, hours=s.hours,
                   expansions=s.expansions, cost=self.cost)

    # the architect -----------------------------------------------------------------------
    def _ask(self, brief: Brief) -> Proposal:
        """A proposal; after ARCHITECT_FAILURES failed calls in a row, the offline one's."""
        while True:
            arch = self.architect
            try:
                proposal = arch.propose(brief)
            except ArchitectError as e:
                self.failures += 1
                fall_back = self.failures >= ARCHITECT_FAILURES
                self.event("architect_failure", architect=arch.name, failures=self.failures,
                           message=str(e), fell_back=fall_back)
                if fall_back:
                    self.architect = OfflineArchitect(self.cfg.seed)
                continue
            except ParseError:
                self.failures = 0  # the server answered; the reply goes back as feedback
                raise
            finally:
                self.calls.extend(arch.drain_calls())
            self.failures = 0
            return proposal

    def _brief(self, k: int) -> Brief:
        obj = self.cfg.objective
        scored = self._with_sources([as_trained(it) for it in self.iterations if eligible(it)])
        variables = self.ds.meta["variables"]
        best = self._with_sources(ranked(self.iterations, obj)[:2])
        return Brief(
            iteration=k, history=tuple(self.iterations),
            gap=gap.analyse([it["scores"] for it in ranked(self.iterations, obj)], variables,
                            self.cfg.target)
            if scored else None,
            patterns=tuple(patterns.mine(scored, variables)),
            exhausted=self.standing.exhausted,
            best_sources=tuple((it["name"], it["source"]) for it in best),
            tried=frozenset(self.tried), objective=obj, threshold=self.cfg.threshold)

    def _with_sources(self, iterations: list[dict]) -> list[dict]:
        return [{**it, "source": self.repo.read(it["branch"])} for it in iterations]

    # the loop ----------------------------------------------------------------------------
    def _stop(self) -> str | None:
        s, cfg = self.standing, self.cfg
        if s.target_reached_by is not None:
            return "target reached"
        if s.expansions and s.stale >= cfg.patience:
            return f"{s.stale} expansions without improvement"
        if s.expansions >= cfg.max_expansions:
            return "expansions used"
        if s.hours > cfg.max_total_hours:
            return "training-time budget used"
        if cfg.max_cost is not None and self.cost >= cfg.max_cost:
            return "cost budget used"
        return None

    def run(self) -> dict:
        try:
            try:
                stop = self._loop()
                final = finals.run(self)
            except KeyboardInterrupt:  # resumable like a crash, but said as what it was
                self.ledger.set_status(self.run_id, "interrupted")
                raise
            if (best := self.standing.best) is not None:
                self.repo.tag_best(best["branch"])  # its branch now holds final.json too
            self.ledger.set_status(self.run_id, "finished")
        finally:
            self.lock.release()
        return self.summary(stop, final)

    def _loop(self) -> str:
        self.event("start", run_id=self.run_id, dir=str(self.dir), architect=self.architect.name,
                   backend=self.backend, objective=self.cfg.objective, target=self.cfg.target,
                   max_expansions=self.cfg.max_expansions)
        sources = template_sources()
        todo = [t for t in self.cfg.templates if t not in self.standing.templates_done]
        if todo:
            self.event("phase", phase="templates")
        for tid in todo:
            if self._stop() == "target reached":
                break
            self.event("iteration", number=len(self.iterations) + 1)
            src = sources[tid]
            proposal = Proposal(tid, "template", policy.check(src).properties or {}, src)
            self._record(self._candidate(len(self.iterations) + 1,
                                         lambda feedback, p=proposal: p, 0, "template"))
        if self._stop() is None:
            self.event("phase", phase="expansions")
        while (stop := self._stop()) is None:
            self.event("iteration", number=len(self.iterations) + 1)
            brief = self._brief(self.standing.expansions)

            def propose(feedback, brief=brief):
                return self._ask(dataclasses.replace(brief, feedback=feedback,
                                                     tried=frozenset(self.tried)))

            self._record(self._candidate(len(self.iterations) + 1, propose,
                                         self.cfg.max_repairs))
        return stop

    def summary(self, stop: str, final: list[dict]) -> dict:
        s = self.standing
        keys = ("number", "name", "architect", "branch", "commit_sha", "status", "recovered",
                "above_null", "beyond_inputs", "beyond_controls", "spike_corr", "failure_kind")
        scored = [as_trained(it) for it in self.iterations if eligible(it)]
        return {"run_id": self.run_id, "stop": stop, "iterations": len(self.iterations),
                "objective": self.cfg.objective, "finals": final,
                "expansions": s.expansions, "hours": s.hours, "cost_usd": self.cost,
                "best": s.best and {k: s.best.get(k) for k in keys} | {
                    "intervals": s.best["scores"].get("intervals")},
                "history": [{k: it.get(k) for k in keys} for it in self.iterations],
                "exhausted": list(s.exhausted),
                "patterns": patterns.mine(self._with_sources(scored), self.ds.meta["variables"])}
