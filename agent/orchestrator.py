"""The search loop: templates, then architect expansions, each checked, committed, trained,
scored and fed back.

Per candidate: duplicate check (normalised-source hash) → static policy and sandboxed
shape check, with up to ``max_repairs`` repairs by the same architect → a branch in the
model repository → sandboxed training and trusted scoring (agent.evaluator) → results
on the branch, one ledger transaction, gap and patterns for the next brief. Failures
are iterations too, with their class and message.

With ``parallel`` N, N candidates train at once on the run's executor (agent.executor:
local slots or Ray tasks) while this driver, the only writer of the ledger and the
repository, proposes, checks, commits, scores and records. A candidate is numbered when
it is proposed and recorded when it finishes, so the standing each proposal sees is that
of every candidate finished so far; with N > 1 the next proposal is prepared while the
N train, so a slot never waits on the architect. With N = 1 the loop is serial: each
proposal sees every earlier result.

Stops with several in flight: no new submission after any stop; the candidates in flight
finish and are recorded, except on the training-time budget (a hard limit), where they
are cancelled and dropped: recording them would spend what the budget forbids.

Everything the loop decides from (best, stale expansions, exhausted families, hours,
cost, templates done) is derived from the ledger, so a run killed at any point resumes
where it stood: finished iterations are kept, those in flight are redone (their numbers
are taken again first).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from agent import executor, finals, population, trust
from agent.config import OBJECTIVES, RunConfig, new_run_id
from agent.dedup import Twins, skeleton_hash, source_hash
from agent.driver_lock import DriverLock
from agent.evaluator import Evaluator, as_trained, training_summary
from agent.ledger import Ledger
from agent.library import OFFER_SOURCES, Library
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
HARD_STOPS = ("training-time budget used",)
"""Stops that cancel the candidates in flight instead of letting them finish."""
POLL_S = 0.25
"""How often the driver looks at what is in flight."""


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

    def close(self) -> None:
        """Cancel what is in flight, stop the executor, let the run go."""
        try:
            if hasattr(self, "executor"):
                self.executor.close()
            runner.remove_stale_containers(self.backend)
            (self.dir / "flight.json").unlink(missing_ok=True)
        finally:
            self.lock.release()

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
        # a killed driver may have left candidates in flight, half-committed: redo them
        self.repo.drop_unrecorded({it["number"] for it in self.iterations})
        self.flight: dict[int, tuple[executor.Handle, dict]] = {}
        """number → (handle, iteration) of each candidate training now."""
        self.prepared: set[int] = set()
        """Numbers of candidates being prepared or waiting for a slot."""
        self._published: list[dict] | None = None
        # a source whose evaluation the machinery broke may be proposed again
        self.tried = {a["source_hash"] for it in self.iterations
                      if it.get("failure_kind") != "infrastructure"
                      for a in it.get("attempts") or [] if a.get("source_hash")}
        # the skeletons and claimed fingerprints of the accepted candidates
        self.twins = Twins()
        for it in self.iterations:
            for a in it.get("attempts") or []:
                if not a.get("kind"):  # accepted attempts only
                    self.twins.remember(a, it["number"])
        best = self.standing.best
        if best:
            self.repo.tag_best(best["branch"])
        self.library = Library(self.repo, lambda it: it["scores"].get(cfg.objective) or 0)
        if cfg.library and not self.library.entries:
            other = Library(ModelRepository(cfg.library))
            self._library_changes(self.library.carry(other, Path(cfg.library).name,
                                                     self._verify_blocks))
        if cfg.learn:  # a resumed run: the evidence of the iterations it kept, no more
            self._learn()
        self.executor = executor.build(
            cfg.executor, self.evaluator.workload(), parallel=cfg.parallel,
            cpus_per_candidate=cfg.cpus_per_candidate,
            gpus_per_candidate=cfg.gpus_per_candidate, device=cfg.device,
            ray_address=cfg.ray_address)

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
            check = self.evaluator.check(proposal.source, self._offered_files())
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
        """Refuse a renamed copy of an earlier candidate: its skeleton (computed here) and
        its functional fingerprint (the worker's claim) both equal. Mark one that shares
        either alone as a variant (agent.dedup.Twins)."""
        fp = (check.get("check") or {}).get("fingerprint")
        skeleton = skeleton_hash(source)
        attempt.update(fingerprint=fp, skeleton=skeleton)
        twin, variant = self.twins.judge(skeleton, fp)
        if twin is not None:
            return {**check, "ok": False, "error": {"kind": "duplicate", "message": (
                f"this model computes exactly what iteration {twin} computes (the same "
                "source up to names and constants, and the same outputs and latents on a "
                "fixed input at a fixed initialisation): propose something that behaves "
                "differently")}}
        if variant is not None:
            attempt["variant_of"] = variant
        return check

    def _prepare(self, n: int, propose, max_repairs: int, architect: str | None = None,
                 lineage: dict | None = None) -> tuple[dict, executor.Job | None]:
        """Propose, check (with repairs) and commit candidate `n`: its iteration and its
        training job (None: refused or failed at the check, finished as it stands)."""
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
        calls, self.calls = self.calls, []
        it = {"number": n, "name": proposal.name, "architect": architect,
              "properties": proposal.properties, "reasoning": proposal.reasoning,
              "repairs": len(attempts) - 1, "attempts": attempts,
              "variant_of": attempts[-1].get("variant_of"), "calls": calls,
              "lineage": lineage and {**lineage, "mode": proposal.mode}}
        if check["ok"]:
            self.twins.remember(attempts[-1], n)
        answered = [c for c in calls if c.get("model")]
        imports = self.library.for_source(proposal.source) if proposal.source else {}
        if imports:  # the library as it was: replay and the finals import from this commit
            it["library_commit"] = self.library.head
        meta = {"prompt_hash": answered[-1]["prompt_hash"], "model": answered[-1].get("model"),
                "input_tokens": sum(c.get("input_tokens", 0) for c in answered),
                "output_tokens": sum(c.get("output_tokens", 0) for c in answered),
                "cost_usd": sum(c.get("cost_usd", 0.0) for c in answered)} if answered else {}
        branch = self.repo.branch_name(n, proposal.name)
        files = {"proposal.json": json.dumps({k: it[k] for k in (
                     "name", "architect", "properties", "reasoning", "repairs", "attempts",
                     "variant_of", "lineage")}
                     | meta | ({"library_commit": it["library_commit"]} if imports else {}),
                     indent=1),
                 "check.json": json.dumps({k: v for k, v in check.items() if k != "reply"}
                                          | ({"advisory": list(trust.ADVISORY)}
                                             if check.get("check") else {}), indent=1)}
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
            return it, None
        return it, self.evaluator.job(proposal.source, f"{n:04d}", library=imports)

    def _finish(self, it: dict, done: executor.Done) -> dict:
        """Score a trained candidate on the trusted side and commit its results."""
        n, name = it["number"], it["name"]
        self.event("activity", what="scoring", name=name, number=n)
        result = self.evaluator.measure(done.outcome)
        trained = training_summary(result.record) or {}
        size = trust.size_fields(trained.pop("n_params", None), done.outcome.weights)
        it.update(result.fields(), training={**trained, **size, "where": done.where,
                                             "tries": done.tries, "retried": done.retried})
        if result.sealed is not None:  # the test moments, read only if it becomes a finalist
            self.sealed.mkdir(exist_ok=True)
            result.sealed.save(self.sealed / f"{n:04d}.npz")
        results = {k: it.get(k) for k in ("status", "scores", "failure_kind", "failure_message")}
        results.update(size, weights=self._keep_weights(n, done.outcome.weights))
        results.update(record=result.record, isolation=result.isolation, where=done.where,
                       tries=done.tries, data_fingerprint=self.ds.meta["fingerprint"],
                       **self.evaluator.settings())
        summary = (f"recovered {it['recovered']}/160 on selection trials, beyond controls "
                   f"{it['beyond_controls']}") if it["status"] == "scored" \
            else f"failed ({it.get('failure_kind')})"
        it["commit_sha"] = self.repo.commit(it["branch"], {"results.json": json.dumps(results)},
                                            f"iteration {n}: {name} — {summary}")
        return it

    def _keep_weights(self, n: int, weights) -> str | None:
        """The trained weights the host counted, kept in the run's weights/ folder: the file's
        path in the run, or None when none were counted."""
        if weights is None or weights.data is None:
            return None
        path = self.dir / "weights" / f"{n:04d}.safetensors"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(weights.data)
        return str(path.relative_to(self.dir))

    def _record(self, it: dict) -> None:
        """The iteration and its architect calls, in one ledger transaction."""
        self.ledger.record_iteration(self.run_id, it, it.pop("calls", []))
        self.iterations = self.ledger.iterations(self.run_id)
        s = self.standing
        new_best = s.best is not None and s.best["number"] == it["number"]
        if s.best is not None:  # a candidate finished late may precede the best in order
            self.repo.tag_best(s.best["branch"])
        self.event("recorded", iteration=it, new_best=new_best, best=s.best, hours=s.hours,
                   expansions=s.expansions, cost=self.cost)
        if self.cfg.learn and eligible(it):
            self._learn()

    # the library -------------------------------------------------------------------------
    def _learn(self) -> None:
        """Mine the scored candidates into the library (agent.library)."""
        def read(it: dict) -> tuple[str, dict]:
            check = json.loads(self.repo.read(it["branch"], "check.json"))
            return self.repo.read(it["branch"]), (check.get("check") or {}).get("blocks") or {}

        scored = [it for it in self.iterations if eligible(it)]
        self._library_changes(self.library.learn(scored, read, self._verify_blocks))

    def _verify_blocks(self, blocks: list[tuple[str, str, dict]],
                       imports: dict[str, str]) -> dict[str, tuple[bool, str]]:
        self.event("activity", what="verifying library blocks",
                   name=", ".join(n for _, n, _ in blocks))
        return runner.verify_blocks(blocks, library=imports, backend=self.backend)

    def _library_changes(self, changes: list[str]) -> None:
        if changes:
            self.event("library", changes=changes, head=self.library.head)

    def _offered_files(self) -> dict[str, str]:
        return self.library.files(self.library.names()) if self.cfg.learn else {}

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

    def _brief(self, k: int, pick: population.Pick) -> Brief:
        obj = self.cfg.objective
        scored = self._with_sources([as_trained(it) for it in self.iterations if eligible(it)])
        variables = self.ds.meta["variables"]

        def shown(it: dict) -> tuple[str, str, str]:
            return it["name"], self.repo.read(it["branch"]), pick.reasons[it["number"]]

        islands = tuple({"type": "islands", "confidence": 1.0, "description": e,
                         "evidence": {}} for e in pick.events)
        return Brief(
            iteration=k, history=tuple(self.iterations),
            gap=gap.analyse([it["scores"] for it in ranked(self.iterations, obj)], variables,
                            self.cfg.target)
            if scored else None,
            patterns=tuple(patterns.mine(scored, variables)) + islands,
            exhausted=self.standing.exhausted,
            parent=shown(pick.parent) if pick.parent else None,
            inspirations=tuple(shown(it) for it in pick.inspirations),
            tried=frozenset(self.tried), objective=obj, threshold=self.cfg.threshold,
            library=self._offer())

    def _offer(self) -> tuple[dict, ...]:
        """The library as the brief carries it: every offered block's name, signature,
        docstring and evidence, strongest first; the source of the first OFFER_SOURCES."""
        if not self.cfg.learn:
            return ()
        return tuple({"name": e.name, "kind": e.kind, "signature": e.signature(),
                      "doc": e.doc, "evidence": e.evidence(), "uses": len(e.uses),
                      "strength": e.strength, "source": e.code if k < OFFER_SOURCES else None}
                     for k, e in enumerate(self.library.offered()))

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
            self.close()
        return self.summary(stop, final)

    def _loop(self) -> str:
        self.event("start", run_id=self.run_id, dir=str(self.dir), architect=self.architect.name,
                   backend=self.backend, objective=self.cfg.objective, target=self.cfg.target,
                   max_expansions=self.cfg.max_expansions, parallel=self.cfg.parallel,
                   executor=self.executor.kind)
        self.todo = [t for t in self.cfg.templates if t not in self.standing.templates_done]
        self.phase, ready = None, None
        while True:
            stop = self._stop()
            if stop in HARD_STOPS and not self.todo:
                self._cancel_flight(stop)
            while len(self.flight) < self.cfg.parallel and not self._blocked(stop):
                cand, ready = ready or self._next(), None
                if cand is None:
                    break
                self._launch(*cand)
                stop = self._stop()
            if (ready is None and self.cfg.parallel > 1 and not self._blocked(stop)
                    and len(self.flight) >= self.cfg.parallel):
                ready = self._next()  # prepared while the others train
                if ready is not None and ready[1] is None:  # it failed its check: recorded
                    self._launch(*ready)
                    ready = None
                    continue
            if not self.flight:
                break
            self._collect()
        if ready is not None:  # prepared, never run: its branch goes, its cost stays
            it = ready[0]
            self.ledger.record_calls(self.run_id, it["number"], it.pop("calls", []))
            self.repo.drop_unrecorded({i["number"] for i in self.iterations})
        return stop or self._stop() or "nothing left to propose"

    # candidates in flight ----------------------------------------------------------------
    def _blocked(self, stop: str | None) -> bool:
        """No new submission: the templates stop only when the target is reached, the
        expansions at any stop."""
        return stop == "target reached" if self.todo else stop is not None

    def _number(self) -> int:
        """The lowest number not yet recorded nor taken: serially the next one; after a
        resume, those of the candidates the killed driver had in flight first."""
        taken = {it["number"] for it in self.iterations} | set(self.flight) | self.prepared
        return next(n for n in range(1, len(taken) + 2) if n not in taken)

    def _next(self) -> tuple[dict, executor.Job | None] | None:
        """The next candidate, proposed, checked and committed: a template while any is
        left, then an architect's expansion while the budget allows (counting those in
        flight); None when there is nothing left to propose."""
        if self.todo:
            if self.phase is None:
                self.phase = "templates"
                self.event("phase", phase="templates")
            n, tid = self._number(), self.todo.pop(0)
            self.event("iteration", number=n)
            src = template_sources()[tid]
            proposal = Proposal(tid, "template", policy.check(src).properties or {}, src)
            self.prepared.add(n)
            return self._prepare(n, lambda feedback: proposal, 0, "template")
        flying = sum(it["architect"] != "template" for _, it in self.flight.values())
        k = self.standing.expansions + flying
        if k >= self.cfg.max_expansions:
            return None
        if self.phase != "expansions":
            self.phase = "expansions"
            self.event("phase", phase="expansions")
        n = self._number()
        self.event("iteration", number=n)
        pick = population.choose(self.iterations, k, self.cfg.objective,
                                 self.ds.meta["variables"], self.cfg.seed) \
            if self.cfg.archive else population.top_two(self.iterations, self.cfg.objective)
        brief = self._brief(k, pick)

        def propose(feedback, brief=brief):
            return self._ask(dataclasses.replace(brief, feedback=feedback,
                                                 tried=frozenset(self.tried)))

        self.prepared.add(n)
        lineage = {"island": pick.island, "parent": pick.parent and pick.parent["number"],
                   "inspirations": [it["number"] for it in pick.inspirations],
                   "why": {str(k): v for k, v in pick.reasons.items()}}
        return self._prepare(n, propose, self.cfg.max_repairs, lineage=lineage)

    def _launch(self, it: dict, job: executor.Job | None) -> None:
        """Submit a prepared candidate, or record it at once when it failed its check."""
        self.prepared.discard(it["number"])
        if job is None:
            self._record(it)
            return
        handle = self.executor.submit(job)
        self.flight[it["number"]] = (handle, it)
        self.event("activity", what="training", name=it["name"], number=it["number"],
                   backend=self.backend, where=handle.where)
        self._publish()

    def _collect(self) -> None:
        """Record what finished, in the order it finished; report the rest's progress."""
        handles = [h for h, _ in self.flight.values()]
        for h in self.executor.wait(handles, POLL_S):
            number = int(h.job.key)
            _, it = self.flight.pop(number)
            self._record(self._finish(it, self.executor.result(h)))
        self._publish()

    def _cancel_flight(self, why: str) -> None:
        if not self.flight:
            return
        for h, it in self.flight.values():
            self.executor.cancel(h)
            self.event("cancelled", number=it["number"], name=it["name"], why=why)
        self.flight.clear()
        self.repo.drop_unrecorded({it["number"] for it in self.iterations})
        self._publish()

    def _publish(self) -> None:
        """What is in flight and where, for the live view and for `runs` (flight.json)."""
        rows = [{"number": n, "name": it["name"], "where": h.where, "since": h.started,
                 "epoch": h.epoch} for n, (h, it) in sorted(self.flight.items())]
        if rows == self._published:
            return
        self._published = rows
        self.event("flight", candidates=rows)
        path = self.dir / "flight.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"updated": time.time(), "candidates": rows}))
        tmp.replace(path)

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
