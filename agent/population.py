"""The population: a quality-diversity archive kept on islands, and each expansion's parent
and inspirations drawn from it.

- **Cells.** A scored candidate's behaviour descriptor is the category it recovers the
  largest share of, the timescale class it recovers the largest share of, and its size
  (parameters, by decade). Each cell keeps its best (objective count, then recovered,
  then spike r) — an archive, not a top-two. The size is the parameters the host counted
  in the trained weights (agent.trust), never the worker's claim: a model whose weights
  did not come back is in a cell of its own, "size unverified".
- **Islands.** Expansion k belongs to island k mod ``ISLANDS``; the templates seed every
  island. Islands evolve apart: each sees its own members only, and every
  ``MIGRATE_EVERY`` of its expansions the best of its neighbour (island i - 1) joins it.
- **Stagnation.** An island whose last ``STAGNATION`` expansions brought no new island
  best is reseeded: its members become the archive's overall best alone.
- **Choice.** The parent is the island's best with probability ``EXPLOIT``, else a cell
  elite of the island drawn at random (seeded); the inspirations are up to
  ``INSPIRATIONS`` other elites: the island's other best cells, then one from another
  island. Each comes with why it was chosen.

Everything is derived from the recorded iterations and their ``lineage``, so a resumed run
draws the same parents.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from agent.standing import beats, eligible
from agent.trust import counted_params

ISLANDS = 3
MIGRATE_EVERY = 4
STAGNATION = 3
EXPLOIT = 0.7
INSPIRATIONS = 3


def _share(counts: dict, totals: dict) -> str | None:
    rates = {k: counts.get(k, 0) / n for k, n in totals.items() if n}
    return max(sorted(rates), key=rates.get) if rates and max(rates.values()) > 0 else None


def descriptor(it: dict, variables: list[dict]) -> tuple[str, str, str]:
    """(category recovered most, timescale recovered most, size) of a scored iteration,
    shares taken over each class's number of variables; the size by the host's count."""
    s = it["scores"]
    cats, scales = {}, {}
    for v in variables:
        cats[v["category"]] = cats.get(v["category"], 0) + 1
        scales[v["timescale"]] = scales.get(v["timescale"], 0) + 1
    n = counted_params(it)
    size = f"1e{int(math.log10(n))}" if n else "size unverified"
    return (_share(s.get("by_category") or {}, cats) or "nothing",
            _share(s.get("by_timescale") or {}, scales) or "nothing", size)


def quality(it: dict, objective: str) -> tuple:
    s = it["scores"]
    return (s.get(objective) or 0, s.get("recovered") or 0, s.get("spike_corr") or 0.0,
            -it["number"])


def archive(members: list[dict], objective: str, variables: list[dict]
            ) -> dict[tuple, dict]:
    """Cell → its best member."""
    cells: dict[tuple, dict] = {}
    for it in members:
        key = descriptor(it, variables)
        if key not in cells or quality(it, objective) > quality(cells[key], objective):
            cells[key] = it
    return cells


@dataclass
class Island:
    members: list[dict] = field(default_factory=list)
    best: dict | None = None
    stale: int = 0
    expansions: int = 0


@dataclass(frozen=True)
class Pick:
    island: int
    parent: dict | None
    inspirations: tuple[dict, ...]
    reasons: dict[int, str]
    """Iteration number → why it was chosen."""
    events: tuple[str, ...] = ()
    """Reseedings and migrations, as the patterns say them."""


def islands(iterations: list[dict], objective: str) -> tuple[list[Island], list[str]]:
    """The islands after `iterations`, and what happened to them (reseeding, migration)."""
    isles = [Island() for _ in range(ISLANDS)]
    events: list[str] = []
    overall = None
    for it in iterations:
        ok = eligible(it)
        if ok and (overall is None or beats(it, overall, objective)):
            overall = it
        if it.get("architect") == "template":
            targets = range(ISLANDS)
        else:
            island = (it.get("lineage") or {}).get("island")
            targets = [island] if isinstance(island, int) and 0 <= island < ISLANDS else []
        for i in targets:
            isle = isles[i]
            if it.get("architect") != "template":
                isle.expansions += 1
            if not ok:
                if it.get("architect") != "template" and it.get("failure_kind") != \
                        "infrastructure":
                    isle.stale += 1
            else:
                isle.members.append(it)
                if isle.best is None or beats(it, isle.best, objective):
                    isle.best, isle.stale = it, 0
                elif it.get("architect") != "template":
                    isle.stale += 1
            if it.get("architect") == "template":
                continue
            if isle.stale >= STAGNATION and overall is not None:
                events.append(f"island {i} reseeded from #{overall['number']} "
                              f"{overall['name']} after {isle.stale} expansions without "
                              "improvement")
                isle.members, isle.best, isle.stale = [overall], overall, 0
            if isle.expansions % MIGRATE_EVERY == 0:
                source = isles[(i - 1) % ISLANDS].best
                if source is not None and source not in isle.members:
                    isle.members.append(source)
                    events.append(f"#{source['number']} {source['name']} migrated from "
                                  f"island {(i - 1) % ISLANDS} to island {i}")
                    if isle.best is None or beats(source, isle.best, objective):
                        isle.best = source
    return isles, events


def choose(iterations: list[dict], k: int, objective: str, variables: list[dict],
           seed: int) -> Pick:
    """The island, parent and inspirations of expansion `k`."""
    isles, events = islands(iterations, objective)
    i = k % ISLANDS
    isle = isles[i]
    rng = random.Random(f"{seed}:population:{k}")
    cells = archive(isle.members, objective, variables)
    elites = sorted(cells.items(), key=lambda kv: quality(kv[1], objective), reverse=True)
    if not elites:
        return Pick(i, None, (), {}, tuple(events))
    reasons = {}
    if rng.random() < EXPLOIT or len(elites) == 1:
        parent = isle.best or elites[0][1]
        reasons[parent["number"]] = f"parent: island {i}'s best (exploit)"
    else:
        key, parent = rng.choice(elites[1:])
        reasons[parent["number"]] = (f"parent: the elite of island {i}'s cell "
                                     f"{' / '.join(key)} (explore)")
    picks = []
    for key, it in elites:
        if it is not parent and len(picks) < INSPIRATIONS - 1:
            picks.append(it)
            reasons[it["number"]] = f"inspiration: best of cell {' / '.join(key)}"
    others = [isles[j].best for j in range(ISLANDS) if j != i and isles[j].best is not None]
    others = [o for o in others if o is not parent and o not in picks]
    if others:
        o = rng.choice(others)
        picks.append(o)
        j = next(j for j in range(ISLANDS) if isles[j].best is o)
        reasons[o["number"]] = f"inspiration: island {j}'s best (another lineage)"
    return Pick(i, parent, tuple(picks), reasons, tuple(events))


def top_two(iterations: list[dict], objective: str) -> Pick:
    """Without the archive (``--no-archive``, the peers' way): the best so far as the
    parent and the second best as the one inspiration."""
    from agent.standing import ranked

    best = ranked(iterations, objective)[:2]
    if not best:
        return Pick(0, None, (), {})
    reasons = {best[0]["number"]: "parent: the best so far"}
    if len(best) > 1:
        reasons[best[1]["number"]] = "inspiration: the second best"
    return Pick(0, best[0], tuple(best[1:]), reasons)
