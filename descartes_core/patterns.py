"""DreamCoder-style patterns mined across scored iterations (the seed's "sleep phase").

Each pattern is ``{"type", "description", "evidence", "confidence"}``, with the seed's
thresholds: co_recovery (≥ 3 iterations; clusters of ≥ 5 variables with identical
recovery signatures, recovered at least once; confidence min(1, n/5)),
property_correlation (a property value present in some but not all iterations
moving a category's recovery rate by more than 0.15; min(1, n/6)), near_miss (best
r in (0.3, 0.5); 0.8), timescale_alignment (an iteration recovering more than 30 %
of a timescale class; 0.7), never_recovered (a category no iteration recovered;
min(1, n/4)) and improving (a category's rate up by more than 0.1 from the first
to the last iteration, ≥ 3 iterations). Properties include features read from each
source's AST (``code_features``), so patterns can speak of code as well as labels.
"""

from __future__ import annotations

import ast

import numpy as np

from descartes_core.contract import complete

MIN_ITERATIONS = 2
CLUSTER_MIN = 5
EFFECT = 0.15
ALIGNMENT = 0.3
TREND = 0.1


def code_features(source: str) -> dict[str, str]:
    """What the code does, read from its AST (never run): solver, odeint, gating, populations."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    calls = {ast.unparse(n.func).split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.Call)}
    methods = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
               for kw in n.keywords if kw.arg == "method" and isinstance(kw.value, ast.Constant)}
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    return {
        "code.odeint": "adjoint" if "odeint_adjoint" in calls else
                       ("odeint" if "odeint" in calls else "none"),
        "code.solver_method": ",".join(sorted(map(str, methods))) or "inline",
        "code.gating": "yes" if calls & {"sigmoid", "GRUCell", "LSTMCell"} else "no",
        "code.modules": str(len(classes)),
    }


def _rates(vec: np.ndarray, keys: list[str]) -> dict[str, float]:
    return {k: float(vec[[i for i, x in enumerate(keys) if x == k]].mean())
            for k in dict.fromkeys(keys)}


def mine(iterations: list[dict], variables: list[dict]) -> list[dict]:
    """Patterns over scored iterations: each {"name", "properties", "scores"} (+ "source")."""
    scored = [it for it in iterations if it.get("scores")]
    n = len(scored)
    if n < MIN_ITERATIONS:
        return []
    rec = np.array([it["scores"]["recovered_vector"] for it in scored], dtype=bool)
    corr = np.array([it["scores"]["correlations"] for it in scored])
    names = [v["name"] for v in variables]
    cats = [v["category"] for v in variables]
    scales = [v["timescale"] for v in variables]
    out: list[dict] = []

    if n >= 3:
        signatures: dict[bytes, list[int]] = {}
        for j in np.flatnonzero(rec.any(axis=0)):
            signatures.setdefault(rec[:, j].tobytes(), []).append(int(j))
        for idx in signatures.values():
            if len(idx) >= CLUSTER_MIN:
                which = [scored[i]["name"] for i in np.flatnonzero(rec[:, idx[0]])]
                out.append({"type": "co_recovery",
                            "description": f"{len(idx)} variables are always recovered together "
                                           f"(by {', '.join(which)})",
                            "evidence": {"variables": [names[j] for j in idx],
                                         "iterations": which},
                            "confidence": min(1.0, n / 5)})

    props = [dict(complete(it.get("properties") or {}), **code_features(it.get("source", "")))
             for it in scored]  # a source from before the loss axis trained mse_rate
    for key in sorted({k for p in props for k in p if k != "family"}):
        for value in sorted({str(p.get(key)) for p in props}):
            has = np.array([str(p.get(key)) == value for p in props])
            if has.all() or not has.any():
                continue
            with_v, without = _rates(rec[has].mean(0), cats), _rates(rec[~has].mean(0), cats)
            for cat in with_v:
                diff = with_v[cat] - without[cat]
                if abs(diff) > EFFECT:
                    verb = "helps" if diff > 0 else "hurts"
                    out.append({"type": "property_correlation",
                                "description": f"{key}={value} {verb} {cat} "
                                               f"({with_v[cat]:.2f} with vs {without[cat]:.2f} "
                                               "without)",
                                "evidence": {"property": key, "value": value, "category": cat,
                                             "with": round(with_v[cat], 3),
                                             "without": round(without[cat], 3),
                                             "n_with": int(has.sum())},
                                "confidence": min(1.0, n / 6)})

    best = corr.max(axis=0)
    near = [j for j in range(len(names)) if 0.3 < best[j] < 0.5]
    if near:
        by_cat = {c: sum(cats[j] == c for j in near) for c in dict.fromkeys(cats)}
        out.append({"type": "near_miss",
                    "description": f"{len(near)} variables peak just below recovery (0.3 < r < "
                                   "0.5): " + ", ".join(f"{c} {k}" for c, k in by_cat.items()
                                                       if k),
                    "evidence": {"variables": [names[j] for j in near], "by_category": by_cat},
                    "confidence": 0.8})

    for i, it in enumerate(scored):
        for scale, rate in _rates(rec[i], scales).items():
            if rate > ALIGNMENT:
                out.append({"type": "timescale_alignment",
                            "description": f"{it['name']} recovers {rate:.0%} of the {scale} "
                                           "variables",
                            "evidence": {"iteration": it["name"], "timescale": scale,
                                         "rate": round(rate, 3)},
                            "confidence": 0.7})

    first, last = _rates(rec[0], cats), _rates(rec[-1], cats)
    ever = _rates(rec.any(axis=0), cats)
    for cat in ever:
        if ever[cat] == 0:
            out.append({"type": "never_recovered",
                        "description": f"no iteration has recovered any {cat} variable "
                                       "(an ontological gap)",
                        "evidence": {"category": cat}, "confidence": min(1.0, n / 4)})
        elif n >= 3 and last[cat] - first[cat] > TREND:
            out.append({"type": "improving",
                        "description": f"{cat} recovery rose from {first[cat]:.2f} to "
                                       f"{last[cat]:.2f}",
                        "evidence": {"category": cat, "first": round(first[cat], 3),
                                     "last": round(last[cat], 3)},
                        "confidence": min(1.0, n / 5)})
    return out
