"""Gap analysis: how far the best model so far is from the target, and where it falls short.

Reads the score dicts of scored iterations (``Scores.to_dict()``) and the dataset's
variable table; returns the dict the prompt builder reads: ``remaining_gap`` (percent
of the target still missing), ``direction`` (the category recovered least, by rate),
``profile`` / ``timescale_profile`` / ``dynamics_profile`` (recovered, total, rate and
the missed variables' names), ``near_misses`` (best r over all iterations in
[0.3, threshold)), and the best model's three counts: recovered, above null, beyond
inputs.
"""

from __future__ import annotations

import numpy as np

from descartes_core.scoring import NEAR_MISS

DEFAULT_TARGET = 120


def _profile(keys: list[str], recovered: np.ndarray, names: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        hit = int(recovered[idx].sum())
        out[key] = {"recovered": hit, "total": len(idx), "rate": round(hit / len(idx), 3),
                    "missed": [names[i] for i in idx if not recovered[i]]}
    return out


def analyse(scores: list[dict], variables: list[dict], target: int = DEFAULT_TARGET) -> dict:
    """The gap of the best of `scores` against `target` variables. `scores` (at least one)
    come best first, as agent.standing ranks them; near-misses and never-recovered read
    them all."""
    if not scores:
        raise ValueError("gap analysis needs at least one scored iteration")
    best = scores[0]
    rec = np.asarray(best["recovered_vector"], dtype=bool)
    names = [v["name"] for v in variables]
    profile = _profile([v["category"] for v in variables], rec, names)
    threshold = best["threshold"]
    best_r = np.max([s["correlations"] for s in scores], axis=0)
    ever = np.any([s["recovered_vector"] for s in scores], axis=0)
    return {
        "target": target,
        "best_recovered": best["recovered"],
        "best_above_null": best.get("above_null"),
        "best_beyond_inputs": best.get("beyond_inputs"),
        "best_spike_corr": best["spike_corr"],
        "remaining_gap": round(100.0 * max(0, target - best["recovered"]) / target, 1),
        "direction": min(profile, key=lambda k: profile[k]["rate"]),
        "profile": profile,
        "timescale_profile": _profile([v["timescale"] for v in variables], rec, names),
        "dynamics_profile": _profile([v["dynamics"] for v in variables], rec, names),
        "near_misses": [n for n, r in zip(names, best_r, strict=True)
                        if NEAR_MISS <= r < threshold],
        "never_recovered": [n for n, e in zip(names, ever, strict=True) if not e],
    }
