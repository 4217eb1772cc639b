"""Standing: the one place that decides which iterations count, which is best, how stale the
search is, which families are exhausted and who the finalists are.

- Eligible: scored, with no training failure. A candidate whose training failed (the
  verifier, a divergence, a kill, NaN) is never ranked, tagged best or counted toward
  the target, whatever its untrained latents recover.
- Best: the first eligible iteration, then each one that *beats* it: a higher count on
  the objective (selection trials), and higher on at least ``CONFIDENCE`` of the
  paired bootstrap resamples of those trials (every model is scored on the same fixed
  resamples, so replicate k of two models saw the same trials). That is a one-sided
  paired bootstrap test at 90 %: a lead the trials cannot tell from noise is not a
  new best, and an expansion that brings one counts as stale.
- Infrastructure: an iteration whose evaluation the machinery broke (a worker or node
  that died twice) uses an expansion but is never stale nor a miss of its family.
- Finalists: the best, then the next eligible iterations by objective count (spike r
  breaks ties), up to ``k``; they alone are scored on the locked test trials.

Nothing here imports torch or reads anything but the recorded iterations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

CONFIDENCE = 0.9
"""Share of paired resamples on which a challenger must lead the best to replace it."""
EXHAUSTED_AFTER = 2
"""Misses (iterations that brought no new best) after which a family counts as exhausted."""


def eligible(it: dict) -> bool:
    """Scored, and its training did not fail."""
    return it.get("status") == "scored" and not it.get("failure_kind") \
        and isinstance(it.get("scores"), dict)


def lead(challenger: dict, incumbent: dict, objective: str) -> float:
    """Share of the paired resamples on which `challenger` counts more than `incumbent`
    (1.0 or 0.0 from the point counts when either has no resamples)."""
    a, b = challenger["scores"], incumbent["scores"]
    ra = (a.get("replicates") or {}).get(objective)
    rb = (b.get("replicates") or {}).get(objective)
    if not ra or not rb or len(ra) != len(rb):
        return float((a.get(objective) or 0) > (b.get(objective) or 0))
    return sum(x > y for x, y in zip(ra, rb, strict=True)) / len(ra)


def beats(challenger: dict, incumbent: dict, objective: str) -> bool:
    """A higher count, by more than the selection trials' noise."""
    higher = (challenger["scores"].get(objective) or 0) > (incumbent["scores"].get(objective) or 0)
    return higher and lead(challenger, incumbent, objective) >= CONFIDENCE


@dataclass
class Standing:
    """What the loop decides from, derived from the recorded iterations."""

    best: dict | None = None
    stale: int = 0
    exhausted: tuple[str, ...] = ()
    hours: float = 0.0
    expansions: int = 0
    templates_done: frozenset[str] = frozenset()
    target_reached_by: dict | None = None
    """The first eligible iteration recovering at least the target (selection trials)."""


def standing(iterations: list[dict], objective: str, target: int | None = None) -> Standing:
    s, misses = Standing(), Counter()
    for it in iterations:
        s.hours += it.get("train_hours") or 0.0
        improved = eligible(it) and (s.best is None or beats(it, s.best, objective))
        if improved:
            s.best = it
        if (target is not None and s.target_reached_by is None and eligible(it)
                and (it["scores"].get("recovered") or 0) >= target):
            s.target_reached_by = it
        props = it.get("properties")  # the architect's own words: a family must be a name
        family = props.get("family") if isinstance(props, dict) else None
        blameless = it.get("failure_kind") == "infrastructure"  # the machinery failed
        if isinstance(family, str) and family and not improved and not blameless:
            misses[family] += 1
        if it.get("architect") == "template":
            s.templates_done |= {it["name"]}
        else:
            s.expansions += 1
            if not blameless:
                s.stale = 0 if improved else s.stale + 1
    s.exhausted = tuple(sorted(f for f, n in misses.items() if n >= EXHAUSTED_AFTER))
    return s


def ranked(iterations: list[dict], objective: str) -> list[dict]:
    """Eligible iterations, the best first, then by objective count and spike r."""
    best = standing(iterations, objective).best
    rest = sorted((it for it in iterations if eligible(it) and it is not best),
                  key=lambda it: (-(it["scores"].get(objective) or 0),
                                  -(it["scores"].get("spike_corr") or 0.0), it["number"]))
    return ([best] if best else []) + rest


def finalists(iterations: list[dict], objective: str, k: int) -> list[dict]:
    """The `k` iterations scored on the locked test trials at the end of a run."""
    return ranked(iterations, objective)[:k]
