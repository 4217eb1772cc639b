"""The HTML report of a run: one self-contained file (inline SVG and CSS, no network).

Read from the run's ledger, its model repository and its recorded exchanges: progress
against iterations and training hours, the iterations × 160 recovery heatmap, recovery by
category beside the baselines, a Pareto view, one section per iteration (hypothesis next
to outcome, repairs, training curve, scores, source and diff), the DreamCoder patterns as
they stood at each expansion and what the architect was told, and the architects' cost.

Inert: much of what it shows was written by the candidates or sent back by the sandbox, so
every value it did not write itself goes through `agent.inert` (escaped text, validated
numbers, slugged ids), no field is assumed to have its type, the figures never parse
mathtext, and a section that still cannot be drawn says so instead of losing the report.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from html import escape
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer

from agent import inert
from agent import report_plots as plots
from agent.llm import RECORDING, Recording
from agent.repository import RefError
from agent.runs import Run, standing
from descartes_core import baselines, gap, patterns, variables

CSS = Path(__file__).with_name("report.css")
SECTIONS = (("summary", "Summary"), ("progress", "Progress"), ("heatmap", "Recovery heatmap"),
            ("categories", "By category"), ("pareto", "Pareto"), ("iterations", "Iterations"),
            ("patterns", "Patterns"), ("cost", "Architect cost"))


def _variables(cfg: dict) -> list[dict]:
    meta = Path(cfg.get("data_dir") or "") / "meta.json"
    try:
        return json.loads(meta.read_text())["variables"]
    except (OSError, ValueError, KeyError):
        return variables.describe()


def h(value, limit: int | None = None) -> str:
    """Any value as escaped, inert HTML text (safe in an element and in a quoted attribute)."""
    return escape(inert.text(value, limit), quote=True)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _read(run: Run, ref: str, path: str, as_json: bool = True):
    try:
        text = run.repo.read(ref, path)
        return json.loads(text) if as_json else text
    except (RefError, ValueError, RecursionError):  # absent, or not JSON
        return None


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    cls = lambda i: ' class="num"' if i in numeric else ""  # noqa: E731
    th = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _status_class(status) -> str:
    return status if status in ("scored", "failed", "refused") else "other"


_fmt = inert.fmt  # a validated number or "–": never a str, whatever it claims to be


def _guarded(draw, *args) -> str:
    """`draw(*args)`, or a note saying why it could not be drawn: a view loses one part, not
    the whole report, to whatever it did not foresee."""
    try:
        return draw(*args)
    except Exception as e:  # reported in the page, never raised
        return (f'<p class="section-error">This part could not be drawn '
                f"({h(type(e).__name__)}: {h(str(e), 300)}).</p>")


class Report:
    def __init__(self, run: Run):
        self.run = run
        self.row = run.row()
        self.cfg = _dict(self.row["config"])
        self.rows = run.ledger.iterations(run.id)
        self.calls = run.ledger.calls(run.id)
        self.vars = _variables(self.cfg)
        self.objective = inert.text(self.cfg.get("objective", "recovered"))
        self.details = {}
        for r in self.rows:
            source = _read(run, r["branch"], "model.py", as_json=False)
            self.details[r["number"]] = {
                "proposal": _dict(_read(run, r["branch"], "proposal.json")),
                "check": _dict(_read(run, r["branch"], "check.json")),
                "results": _dict(_read(run, r["branch"], "results.json")),
                "source": inert.text(source) if isinstance(source, str) else None}
        self.scored = [r for r in self.rows if isinstance(r.get("scores"), dict)]
        self.input_recovered = next((inert.number(r["scores"].get("input_recovered"))
                                     for r in self.scored), None)
        self.prompts = self._prompts()

    def _prompts(self) -> dict[str, str]:
        return {d["prompt_hash"]: d["user"]
                for d in Recording(self.run.dir / RECORDING).exchanges()
                if isinstance(d.get("user"), str)}

    # sections --------------------------------------------------------------------------
    def summary(self) -> str:
        s = standing(self.rows, self.objective)
        b = s.best
        statuses = Counter(inert.text(r["status"]) for r in self.rows)
        cost = sum(inert.number(c.get("cost_usd")) or 0.0 for c in self.calls)
        cards = [("best recovered", f"{_fmt(b.get('recovered'))}/160" if b else "–"),
                 ("above null", _fmt(b and b.get("above_null"))),
                 ("beyond inputs", _fmt(b and b.get("beyond_inputs"))),
                 ("spike r", _fmt(b and b.get("spike_corr"))),
                 ("iterations", f"{len(self.rows)} ({_fmt(s.expansions)} expansions)"),
                 ("training", f"{_fmt(s.hours, 2)} h"),
                 ("architect cost", f"${_fmt(cost, 2)}"),
                 ("input baseline", f"{_fmt(self.input_recovered)}/160")]
        html = '<div class="cards">' + "".join(
            f'<div class="card">{h(k)}<b>{v}</b></div>' for k, v in cards) + "</div>"
        html += (f"<p>Best: <b>{h(b.get('name'))}</b> ({h(b.get('branch'))}); improvement is "
                 f"measured by <b>{h(self.objective.replace('_', ' '))}</b>, target "
                 f"{h(self.cfg.get('target'))}. " if b else "<p>Nothing was scored. ")
        html += ("Statuses: " + ", ".join(f"{v} {h(k)}" for k, v in statuses.items())
                 + ". Every score is on held-out test trials; <i>above null</i> counts variables "
                 "the untrained model does not recover, <i>beyond inputs</i> those a linear "
                 "probe of the filtered inputs does not.</p>")
        return html

    def progress(self) -> str:
        if not self.rows:
            return "<p>No iterations.</p>"
        return plots.progress(self.rows, inert.number(self.cfg.get("target")) or 120,
                              self.input_recovered)

    def heatmap(self) -> str:
        if not self.scored:
            return "<p>No scored iteration.</p>"
        return ("<p>Rows: scored iterations; columns: the 160 variables grouped by category and "
                "ordered fast to slow within each; colour: held-out r of the probe; dots: "
                "recovered. Blocks no row recovers are the ontological gaps.</p>"
                + plots.heatmap(self.scored, self.vars,
                                float(inert.number(self.cfg.get("threshold")) or 0.5)))

    def categories(self) -> str:
        best = standing(self.rows, self.objective).best
        if not best:
            return "<p>No scored iteration.</p>"
        models = [(f"best: {inert.text(best.get('name'), 40, oneline=True)}",
                   _dict(_dict(best.get("scores")).get("by_category"))),
                  ("Volterra–Laguerre (input baseline)", self._input_by_category())]
        path = baselines.results_path(self.row["data_fingerprint"])
        note = ""
        if path.exists():
            models += [(b["name"], b["scores"]["by_category"]) for b in
                       json.loads(path.read_text()) if b.get("scores")
                       and b["name"] != "volterra_laguerre"]
        else:
            note = ("<p class=\"muted\">The LSTM and plain neural ODE baselines have not been "
                    "run on this dataset: <code>descartes-agent baselines --data-dir "
                    f"{h(self.cfg.get('data_dir', 'DIR'))}</code> adds them here.</p>")
        counts = Counter(v["category"] for v in self.vars)
        return plots.categories(models, counts) + note

    def _input_by_category(self) -> dict:
        s = self.scored[0]["scores"]
        # recovered by the inputs = recovered here and not beyond the inputs, or missed here
        gain = _list(s.get("gain_over_inputs"))
        out = Counter()
        threshold = inert.number(s.get("threshold"))
        for v, r, g in zip(self.vars, _list(s.get("correlations")), gain, strict=False):
            r, g = inert.number(r), inert.number(g)
            if None not in (r, g, threshold) and r - g >= threshold:
                out[v["category"]] += 1
        return dict(out)

    def pareto(self) -> str:
        pts = []
        for r in self.scored:
            rec = _dict(self.details[r["number"]]["results"].get("record"))
            wall_s = inert.number(rec.get("wall_s"))  # the sandbox's word: checked, not trusted
            pts.append({"name": inert.text(r.get("name"), 18, oneline=True),
                        "recovered": inert.number(r.get("recovered")),
                        "n_params": inert.number(rec.get("n_params")),
                        "minutes": None if wall_s is None else wall_s / 60})
        return plots.pareto(pts) if pts else "<p>No scored iteration.</p>"

    def iterations(self) -> str:
        parts, best = [], None
        fmt = HtmlFormatter(nowrap=False)
        for r in self.rows:
            d = self.details[r["number"]]
            parts.append(_guarded(self._iteration, r, d, best, fmt))
            score = inert.number(_dict(r.get("scores")).get(self.objective))
            if score is not None and (best is None or score > best[0]):
                best = (score, r, d["source"])
        return "".join(parts)

    def _iteration(self, r: dict, d: dict, best, fmt) -> str:
        p, check, res = d["proposal"], d["check"], d["results"]
        number, status = _fmt(r.get("number")), h(r.get("status"))
        head = (f'<h3 id="it-{inert.slug(number)}">#{number} {h(r.get("name"))} '
                f'<span class="status-{_status_class(r.get("status"))}">{status}</span></h3>')
        props = ", ".join(f"{inert.text(k)}={inert.text(v)}"
                          for k, v in _dict(r.get("properties")).items())
        meta = _table(["architect", "branch", "commit", "properties"], [[
            h(r.get("architect")), f"<code>{h(r.get('branch'))}</code>",
            f"<code>{h(r.get('commit_sha'), 12)}</code>", h(props)]])
        s = r.get("scores")
        if isinstance(s, dict):
            by_category = ", ".join(f"{inert.text(k)} {inert.text(v)}"
                                    for k, v in _dict(s.get("by_category")).items())
            outcome = (f"recovered <b>{_fmt(s.get('recovered'))}/160</b>, above null "
                       f"{_fmt(s.get('above_null'))}, beyond control "
                       f"{_fmt(s.get('beyond_control'))} (the control recovers "
                       f"{_fmt(s.get('control_recovered'))}), beyond inputs "
                       f"{_fmt(s.get('beyond_inputs'))}, spike r {_fmt(s.get('spike_corr'))}, "
                       f"CCA {_fmt(s.get('cca'))}; by category: {h(by_category)}")
            if r.get("failure_kind"):  # scored, but training was cut short
                outcome += (f"<p>Training stopped early: {h(r.get('failure_kind'))}: "
                            f"{h(r.get('failure_message'), 600)}</p>")
        else:
            outcome = (f"{h(r.get('failure_kind'))}: <pre>"
                       f"{h(r.get('failure_message'), 1500)}</pre>")
        pair = (f'<div class="pair"><div><b>Hypothesis</b> (the proposal\'s reasoning)<p>'
                f'{h(r.get("reasoning") or "—")}</p></div><div><b>Outcome</b><div>{outcome}'
                "</div></div></div>")
        attempts = [_dict(a) for a in _list(r.get("attempts"))]
        tries = ""
        if len(attempts) > 1 or check.get("ok") is not True:
            tries = "<p><b>Check and repairs</b></p>" + _table(
                ["attempt", "candidate", "outcome"],
                [[str(k + 1), h(a.get("name") or "(no code)"),
                  "accepted" if not a.get("kind") else
                  f"{h(a.get('kind'))}: <pre>{h(a.get('message'), 600)}</pre>"]
                 for k, a in enumerate(attempts)])
        elif isinstance(check.get("check"), dict):
            c = check["check"]  # what the sandbox measured: each field checked, not trusted
            warnings = "; ".join(inert.text(w, 300) for w in _list(c.get("warnings")))
            tries = (f"<p>Check: accepted in the {h(check.get('isolation'))} sandbox, "
                     f"{_fmt(c.get('n_params'))} parameters, forward "
                     f"{_fmt(c.get('forward_ms'), 1)} ms"
                     + (f"; warnings: {h(warnings, 1500)}" if warnings else "") + ".</p>")
        train = ""
        rec = _dict(res.get("record"))
        history = _list(rec.get("history"))
        if history:
            train = (f"<p>Training: {_fmt(rec.get('epochs'))} epochs, {h(rec.get('strategy'))}"
                     f" on {h(rec.get('device'))}, {_fmt(rec.get('wall_s'), 0)} s, stopped by "
                     f"{h(rec.get('stopped_by'))}.</p>" + plots.training_curve(history))
        code = ""
        if d["source"]:
            code = ("<details><summary>Source</summary>"
                    + highlight(d["source"], PythonLexer(), fmt) + "</details>")
            if best and best[2]:
                was = f"#{_fmt(best[1].get('number'))} {inert.text(best[1].get('name'), 200)}"
                now = f"#{number} {inert.text(r.get('name'), 200)}"
                diff = "".join(difflib.unified_diff(
                    best[2].splitlines(keepends=True), d["source"].splitlines(keepends=True),
                    " ".join(was.split()), " ".join(now.split())))
                code += (f"<details><summary>Diff against the best so far ({h(was)})</summary>"
                         + highlight(diff or "(identical)\n", DiffLexer(), fmt) + "</details>")
        digest = p.get("prompt_hash")
        told = self.prompts.get(digest) if isinstance(digest, str) else None
        if told:
            code += ("<details><summary>What the architect was told</summary><pre>"
                     f"{h(told)}</pre></details>")
        return f"<section>{head}{meta}{pair}{tries}{train}{code}</section>"

    def patterns(self) -> str:
        out = []
        for i, r in enumerate(self.rows):
            if r["architect"] == "template":
                continue
            prior = [{**q, "properties": _dict(q.get("properties")),
                      "source": self.details[q["number"]]["source"] or ""}
                     for q in self.rows[:i] if isinstance(q.get("scores"), dict)]
            found = patterns.mine(prior, self.vars)
            g = gap.analyse([q["scores"] for q in prior], self.vars,
                            inert.number(self.cfg.get("target")) or 120) if prior else None
            exhausted = standing(self.rows[:i], self.objective).exhausted
            told = (f"gap direction <b>{h(g.get('direction'))}</b>, remaining gap "
                    f"{_fmt(g.get('remaining_gap'), 1)}%" if g else "no scored iteration yet")
            items = "".join(f"<li>[{h(q.get('type'))}, {_fmt(q.get('confidence'), 1)}] "
                            f"{h(q.get('description'))}</li>" for q in map(_dict, found))
            families = ", ".join(inert.text(f, 80) for f in exhausted) or "none"
            out.append(f"<h3>Before #{_fmt(r.get('number'))} {h(r.get('name'))}</h3><p>{told};"
                       f" exhausted families: {h(families)}.</p>"
                       + (f"<ul>{items}</ul>" if items else
                          "<p class=\"muted\">No patterns yet (they need two scored "
                          "iterations).</p>"))
        return "".join(out) or "<p>No expansions.</p>"

    def cost(self) -> str:
        by = {}
        for c in self.calls:
            a = by.setdefault(inert.text(c.get("architect")), Counter())
            a["calls"] += 1
            a["errors"] += bool(c.get("error"))
            for key, field in (("input", "input_tokens"), ("output", "output_tokens"),
                               ("cost", "cost_usd"), ("latency", "latency_s")):
                a[key] += inert.number(c.get(field)) or 0
        if not by:
            return ("<p>No architect calls: the templates and the offline architect cost "
                    "nothing.</p>")
        return _table(["architect", "calls", "failed", "input tokens", "output tokens",
                       "cost ($)", "mean latency (s)"],
                      [[h(k), str(a["calls"]), str(a["errors"]), _fmt(a["input"]),
                        _fmt(a["output"]), _fmt(a["cost"], 4), _fmt(a["latency"] / a["calls"], 2)]
                       for k, a in by.items()], numeric={1, 2, 3, 4, 5, 6})

    def html(self) -> str:
        title = f"descartes-agent run {inert.text(self.run.id)}"
        body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>'
                       f"{_guarded(getattr(self, sid))}</section>" for sid, name in SECTIONS)
        nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name in SECTIONS)
        css = CSS.read_text() + HtmlFormatter().get_style_defs(".highlight")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{h(title)}</title><style>{css}</style></head><body><header>"
                f"<h1>{h(title)}</h1><p>{h(self.run.state())} · architect "
                f"{h(self.cfg.get('architect'))} · data "
                f"{h(self.row['data_fingerprint'], 16)} · seed {h(self.cfg.get('seed'))}</p>"
                f"</header><nav>{nav}</nav><main>{body}</main></body></html>\n")


def write(run: Run, out: Path | None = None) -> Path:
    path = out or run.dir / "report.html"
    path.write_text(Report(run).html(), encoding="utf-8", errors="replace")
    return path
