"""What the host decides from: its own measurements, never a worker's claims.

The candidate runs in the worker's interpreter and can write the worker's answer itself, so
every field the worker chooses is a claim (``ADVISORY``): kept and shown as the worker's
word, never used to refuse, rank or place a candidate. What the host decides from:

- **Duplicates:** the source skeleton it computes itself (agent.dedup); a claimed
  fingerprint only marks a variant, and refuses only beside an equal skeleton.
- **Size:** the parameters it counts in the trained weights the job returns
  (sandbox.weights), or none: the size is unverified.
- **Plausibility:** scores it computed on trials the sandbox never saw the answers of; a
  score with r ≥ ``IMPLAUSIBLE_R`` on most variables is flagged (``implausible``). Only the
  exact circuit gets there (re-simulating a job's inputs gave r = 1 on all 160); a twin
  with every conductance 1 % off reaches 0.99 on a few kinds of variable only, and today's
  models reach 0.6–0.75 (ceiling.md in the research notes). Such a score says the answers
  leaked into the sandbox, not that a model learnt them.
"""

from __future__ import annotations

import math

ADVISORY = ("n_params", "fingerprint", "warnings", "grad_fraction", "forward_ms",
            "roundtrip_error")
"""The shape check's fields, all chosen by the worker."""
CLAIMED = "the worker's claims, unverified"
"""How a view labels them."""
IMPLAUSIBLE_R = 0.99


def _real(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def implausible(scores) -> str | None:
    """Why a score is implausible ("r ≥ 0.99 on 120 of 160 variables, …": on more than half
    its variables), or None; None too for anything but a scores dict with correlations."""
    rs = scores.get("correlations") if isinstance(scores, dict) else None
    if not isinstance(rs, list) or not rs:
        return None
    high = sum(1 for r in rs if _real(r) and r >= IMPLAUSIBLE_R)
    if 2 * high <= len(rs):
        return None
    return (f"r ≥ {IMPLAUSIBLE_R} on {high} of {len(rs)} variables, beyond any honest model "
            "(the answers may have leaked into the sandbox)")


def size_fields(claimed, weights) -> dict:
    """The training record's size fields: the host's count from the returned weights
    (``n_params_counted``, None: unverified, with ``n_params_unverified`` saying why) and
    the worker's claim (``n_params_claimed``), each under its own name."""
    counted = getattr(weights, "n_params", None)
    out = {"n_params_counted": counted, "n_params_claimed": claimed}
    if counted is None:
        out["n_params_unverified"] = getattr(weights, "why", None) or "no weights came back"
    return out


def counted_params(it: dict) -> int | None:
    """An iteration's parameter count as the host counted it; None: unverified."""
    t = it.get("training") if isinstance(it, dict) else None
    n = t.get("n_params_counted") if isinstance(t, dict) else None
    return n if type(n) is int and n >= 0 else None
