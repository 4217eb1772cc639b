"""The report's figures (matplotlib, headless), each returned as inline SVG text.

Labels are names the candidates chose: each is drawn as plain text (mathtext and TeX off,
so `$…$` or a stray backslash is only a character), and every value is a validated number.
"""

from __future__ import annotations

import functools
import io
import itertools
import re

import matplotlib

matplotlib.use("Agg")  # headless: before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from agent import inert
from agent.standing import eligible, standing
from descartes_core.variables import CATEGORIES

plt.rcParams["svg.hashsalt"] = "descartes-agent"  # the same run, the same file

OBJECTIVES = (("beyond_controls", "beyond controls"), ("recovered", "recovered"),
              ("above_null", "above null"), ("beyond_random", "beyond random"),
              ("beyond_inputs", "beyond inputs"))
"""scoring.COUNTS: the best's count of each, as the search went."""
COLOURS = {"beyond_controls": "#8b1a8b", "recovered": "#1f5fa8", "above_null": "#d07a12",
           "beyond_random": "#b8860b", "beyond_inputs": "#2e8b57", "template": "#888888",
           "expansion": "#1f5fa8"}


_figures = itertools.count(1)
# a label is text, never markup: no mathtext, no TeX; glyphs as paths, so no <text> either
INERT = {"text.parse_math": False, "text.usetex": False, "svg.fonttype": "path"}


def _inert(figure):
    """Draw `figure` (creation and saving both) with labels that cannot be parsed."""
    @functools.wraps(figure)
    def draw(*args, **kwargs):
        with matplotlib.rc_context(INERT):
            return figure(*args, **kwargs)
    return draw


def _label(value, limit: int = 40) -> str:
    return inert.text(value, limit, oneline=True)


def _value(value) -> float:
    n = inert.number(value)
    return np.nan if n is None else float(n)


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline: no XML prolog or DOCTYPE
    # every figure defines the same clip-path and glyph ids: in one page they must differ
    prefix = f"f{next(_figures)}-"
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', text)
    return re.sub(r'(url\(#|href="#)([^")]+)', rf"\1{prefix}\2", text)


def _scores(r) -> dict:
    s = r.get("scores") if isinstance(r, dict) else None
    return s if isinstance(s, dict) else {}


def _interval(s: dict, key: str) -> tuple[float, float] | None:
    iv = s.get("intervals")
    iv = iv.get(key) if isinstance(iv, dict) else None
    if not isinstance(iv, list) or len(iv) != 2 or None in map(inert.number, iv):
        return None
    return float(iv[0]), float(iv[1])


def bests_so_far(rows: list[dict], objective: str) -> list[dict | None]:
    """After each iteration, the best by `objective` as agent.standing decides it."""
    return [standing(rows[:k + 1], objective).best for k in range(len(rows))]


@_inert
def progress(rows: list[dict], target: int, input_recovered: int | None,
             objective: str = "beyond_controls") -> str:
    """The best's counts (agent.standing: a lead beyond the trials' noise) and spike r as
    the search went, against iteration and training hours; each eligible iteration's count
    on the objective with its interval. All on the selection trials."""
    n = [inert.number(r.get("number")) or k + 1 for k, r in enumerate(rows)]
    hours = np.cumsum([inert.number(r.get("train_hours")) or 0.0 for r in rows])
    bests = [_scores(b) for b in bests_so_far(rows, objective)]
    fig, axes = plt.subplots(2, 2, figsize=(12, 6.4), sharey="row")
    names = dict(OBJECTIVES)
    said = names.get(objective, _label(objective))
    for col, (x, label) in enumerate(((n, "iteration"), (hours, "training hours (cumulative)"))):
        ax = axes[0, col]
        for key, name in OBJECTIVES:
            ax.step(x, [_value(b.get(key)) for b in bests], where="post",
                    color=COLOURS[key], lw=2.2 if key == objective else 1.1,
                    label=f"the best's {name}")
        for kind, marker in (("template", "s"), ("expansion", "o")):
            pts = [(xi, inert.number(_scores(r).get(objective)), _interval(_scores(r), objective))
                   for xi, r in zip(x, rows, strict=True)
                   if eligible(r) and inert.number(_scores(r).get(objective)) is not None
                   and (r.get("architect") == "template") == (kind == "template")]
            if pts:
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                ci = [p[2] or (p[1], p[1]) for p in pts]  # no interval: no bar
                err = np.array([[max(y - lo, 0.0) for y, (lo, _) in zip(ys, ci, strict=True)],
                                [max(hi - y, 0.0) for y, (_, hi) in zip(ys, ci, strict=True)]])
                ax.errorbar(xs, ys, yerr=err, fmt=marker, ms=4.5, zorder=3, capsize=2,
                            color=COLOURS[kind], label=f"{kind}s ({said}, 95 % interval)")
        ax.axhline(_value(target), ls="--", color="#b22222", lw=1,
                   label=f"target {inert.fmt(target)} (recovered)")
        if inert.number(input_recovered) is not None:
            ax.axhline(input_recovered, ls=":", color="#555555", lw=1,
                       label=f"input baseline recovers {inert.fmt(input_recovered)}")
        ax.set_ylim(0, 165)
        ax = axes[1, col]
        ax.plot(x, [_value(_scores(r).get("spike_corr")) if eligible(r) else np.nan
                    for r in rows], "o", color="#444444", ms=4, label="each eligible iteration")
        ax.step(x, [_value(b.get("spike_corr")) for b in bests], where="post", color="#1f5fa8",
                label=f"the best by {said}")
        ax.set_xlabel(label)
    for ax in axes[:, 0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("variables of 160 (selection trials)")
    axes[1, 0].set_ylabel("spike correlation (selection trials)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return svg(fig)


def variable_order(variables: list[dict]) -> list[int]:
    """Grouped by category, then by timescale (geometric mean of the time-constant range)."""
    def key(i):
        v = variables[i]
        lo, hi = v.get("tau_ms") or (1.0, 1.0)
        cat = v["category"]
        return (CATEGORIES.index(cat) if cat in CATEGORIES else 9, np.sqrt(lo * hi), v["name"])

    return sorted(range(len(variables)), key=key)


@_inert
def heatmap(rows: list[dict], variables: list[dict], threshold: float) -> str:
    scored = [r for r in rows if isinstance(r.get("scores"), dict)]
    order = variable_order(variables)

    def correlations(r):
        c = r["scores"].get("correlations")
        c = c if isinstance(c, list) else []
        return [_value(c[i]) if i < len(c) else np.nan for i in order]

    m = np.array([correlations(r) for r in scored], dtype=float).reshape(len(scored), len(order))
    fig, ax = plt.subplots(figsize=(13, 0.9 + 0.32 * len(scored)))
    im = ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(scored)), [f"#{inert.fmt(r.get('number'))} {_label(r.get('name'), 30)}"
                                       for r in scored], fontsize=7)
    cats = [variables[i]["category"] for i in order]
    edges = [k for k in range(1, len(cats)) if cats[k] != cats[k - 1]]
    for e in edges:
        ax.axvline(e - 0.5, color="black", lw=1.2)
    starts = [0, *edges]
    ax.set_xticks([(s + e) / 2 for s, e in zip(starts, [*edges, len(cats)], strict=True)],
                  [f"{cats[s]} (fast → slow)" for s in starts], fontsize=8)
    rec = m >= threshold
    ys, xs = np.nonzero(rec)
    ax.scatter(xs, ys, s=2, color="black", marker=".", label=f"recovered (r ≥ {threshold})")
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 1.18))
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01, label="r on the selection trials")
    return svg(fig)


@_inert
def categories(models: list[tuple[str, dict]], counts: dict[str, int]) -> str:
    """Recovered per category: the best model and each baseline side by side."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(CATEGORIES))
    for k, (name, by_cat) in enumerate(models):
        by_cat = by_cat if isinstance(by_cat, dict) else {}
        vals = [inert.number(by_cat.get(c)) or 0 for c in CATEGORIES]
        bars = ax.bar(x + (k - (len(models) - 1) / 2) * width, vals, width,
                      label=_label(name, 60))
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, [f"{c} (of {counts.get(c, '?')})" for c in CATEGORIES])
    ax.set_ylabel("recovered variables (selection)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return svg(fig)


@_inert
def pareto(points: list[dict], ylabel: str = "recovered of 160") -> str:
    """A count (each point's "count") against parameter count and against training time;
    the front marked. "n_params" is the host's count (agent.trust.counted_params): a point
    without one is left out of the parameters panel, never placed by a claim."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, label, log in ((axes[0], "n_params", "parameters", True),
                                (axes[1], "minutes", "training time (min)", False)):
        pts = [(inert.number(p.get(key)), inert.number(p.get("count")),
                _label(p.get("name"), 18)) for p in points]
        pts = sorted((q for q in pts if None not in q[:2] and (q[0] > 0 or not log)),
                     key=lambda q: q[:2])
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#1f5fa8", s=24)
        front, best = [], -1
        for x, y, _ in pts:  # cheaper first: a point is on the front if it beats all cheaper
            if y > best:
                front.append((x, y))
                best = y
        ax.step(*zip(*front, strict=True), where="post", color="#d07a12", label="Pareto front")
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(_label(ylabel, 60))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return svg(fig)


@_inert
def training_curve(history: list[dict]) -> str:
    """Train and validation loss per epoch, from what the sandbox reported (entries that
    are not {epoch: number, ...} are left out; a loss that is not a number is a gap)."""
    history = [h for h in history[:5000]
               if isinstance(h, dict) and inert.number(h.get("epoch")) is not None]
    if not history:
        return "<p class=\"muted\">No training curve: the record holds no epochs.</p>"
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [_value(h.get("train")) for h in history], "o-", ms=3, label="train")
    ax.plot(ep, [_value(h.get("val")) for h in history], "o-", ms=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return svg(fig)
