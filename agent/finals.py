"""The final stage: the run's finalists, scored once on the locked test trials.

When the search stops, the best ``finalists`` eligible iterations (agent.standing) are
the only ones ever scored on the test trials. Each is trained ``final_seeds`` times:
its own training in the search (seed ``seed``), read from the test moments sealed when
it was scored, and reruns with seeds ``seed + 1000·j``. Every training is scored on the
selection and the test trials; a finalist's figure is the mean ± sd over the trainings
that succeeded, beside the bootstrap interval of its search training's test count.
Rows go to the ledger's ``finals`` table as they finish (a killed run resumes with the
ones already there) and, at the end, to ``final.json`` on the finalist's branch.
Nothing here feeds the search: it has stopped.
"""

from __future__ import annotations

import json
import statistics

from agent.library import imports_of
from agent.standing import finalists
from descartes_core import scoring

SEED_STEP = 1000
FIGURES = (*scoring.COUNTS, "spike_corr", "self_readout")


def seeds(seed: int, n: int) -> list[int]:
    """The seeds of a finalist's trainings, the search's own first."""
    return [seed + SEED_STEP * j for j in range(n)]


def _mean_sd(values: list[float]) -> list[float] | None:
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return [round(statistics.fmean(values), 4), round(sd, 4)]


def summarise(rows: list[dict], iterations: list[dict]) -> list[dict]:
    """Per finalist (in `rows`' order of first appearance: `run` gives them by rank): the
    mean ± sd of each figure over its successful trainings, on test and on selection, and
    the first training's intervals."""
    names = {it["number"]: it for it in iterations}
    out = []
    for number in dict.fromkeys(r["number"] for r in rows):
        mine = [r for r in rows if r["number"] == number]
        ok = [r for r in mine if r["status"] == "scored"]
        it = names.get(number, {})
        first = ok[0]["test"] if ok else {}
        out.append({
            "number": number, "name": it.get("name"), "branch": it.get("branch"),
            "trainings": len(mine), "scored": len(ok),
            "failed": [r["failure_kind"] for r in mine if r["status"] != "scored"],
            "test": {f: _mean_sd([r["test"][f] for r in ok if r["test"].get(f) is not None])
                     for f in FIGURES},
            "selection": {f: _mean_sd([r["selection"][f] for r in ok
                                       if r["selection"].get(f) is not None]) for f in FIGURES},
            "test_intervals": first.get("intervals", {}),
            "test_events": first.get("events"),
            "controls": {k: first.get(k) for k in ("null_recovered", "random_recovered",
                                                   "input_recovered")},
        })
    return out


def run(orch) -> list[dict]:
    """Score the finalists of `orch` (an agent.orchestrator.Orchestrator) on the test trials."""
    cfg, ledger, ev = orch.cfg, orch.ledger, orch.evaluator
    chosen = finalists(orch.iterations, cfg.objective, cfg.finalists)
    if not chosen:
        return []
    done = {(r["number"], r["seed"]) for r in ledger.finals(orch.run_id)}
    orch.event("phase", phase="finals")
    flight = {}  # handle → (iteration, seed): the reruns train at once, on the executor
    for rank, it in enumerate(chosen, 1):
        for j, seed in enumerate(seeds(cfg.seed, cfg.final_seeds)):
            if (it["number"], seed) in done:
                continue
            orch.event("final", number=it["number"], name=it["name"], seed=seed, rank=rank,
                       finalists=len(chosen), training=j + 1, trainings=cfg.final_seeds)
            sealed = orch.sealed / f"{it['number']:04d}.npz"
            if j == 0 and sealed.exists():
                m = scoring.Measurement.load(sealed)
                ledger.record_final(orch.run_id, it["number"], seed, "scored", None, 0.0,
                                    it["scores"], ev.final_scores(m))
                continue
            source = orch.repo.read(it["branch"])
            job = ev.job(source, f"final-{it['number']:04d}-{seed}", seed,
                         imports_of(orch.repo, it["branch"], source))
            flight[orch.executor.submit(job)] = (it, seed)
    while flight:
        for h in orch.executor.wait(list(flight), 0.25):
            it, seed = flight.pop(h)
            res = ev.measure(orch.executor.result(h).outcome)
            test = ev.final_scores(res.sealed) if res.sealed is not None else None
            ledger.record_final(orch.run_id, it["number"], seed, res.status, res.failure_kind,
                                res.train_hours, res.scores, test)
        if len(flight) == 1:  # the last one: its epochs drive the live view's bar
            (h,) = flight
            if h.epoch:
                orch.event("epoch", **h.epoch)
    rank = {it["number"]: i for i, it in enumerate(chosen)}
    summary = summarise(sorted((r for r in ledger.finals(orch.run_id) if r["number"] in rank),
                               key=lambda r: (rank[r["number"]], r["seed"])), orch.iterations)
    for row in summary:
        it = next(i for i in chosen if i["number"] == row["number"])
        test = row["test"]
        orch.repo.commit(it["branch"], {"final.json": json.dumps(row, indent=1)},
                         f"iteration {it['number']}: {it['name']} — final, held out: beyond "
                         f"controls {_fmt(test['beyond_controls'])}, recovered "
                         f"{_fmt(test['recovered'])} ({row['scored']} trainings)")
    return summary


def _fmt(ms: list[float] | None) -> str:
    return "–" if ms is None else f"{ms[0]:.1f} ± {ms[1]:.1f}"
