"""The HTML report of a run: one self-contained file (inline SVG and CSS, no network).

Read from the run's ledger, its model repository and its recorded exchanges: progress
against iterations and training hours, the iterations × 160 recovery heatmap, recovery by
category beside the baselines, a Pareto view, one section per iteration (hypothesis next
to outcome, repairs, training curve, scores, source and diff), the DreamCoder patterns as
they stood at each expansion and what the architect was told, and the architects' cost.
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


def _read(run: Run, ref: str, path: str, as_json: bool = True):
    try:
        text = run.repo.read(ref, path)
    except RefError:
        return None
    return json.loads(text) if as_json else text


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    cls = lambda i: ' class="num"' if i in numeric else ""  # noqa: E731
    th = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else escape(str(v))


class Report:
    def __init__(self, run: Run):
        self.run = run
        self.row = run.row()
        self.cfg = self.row["config"]
        self.rows = run.ledger.iterations(run.id)
        self.calls = run.ledger.calls(run.id)
        self.vars = _variables(self.cfg)
        self.objective = self.cfg.get("objective", "recovered")
        self.details = {r["number"]: {
            "proposal": _read(run, r["branch"], "proposal.json") or {},
            "check": _read(run, r["branch"], "check.json") or {},
            "results": _read(run, r["branch"], "results.json"),
            "source": _read(run, r["branch"], "model.py", as_json=False)} for r in self.rows}
        self.scored = [r for r in self.rows if r.get("scores")]
        self.input_recovered = next((r["scores"].get("input_recovered") for r in self.scored),
                                    None)
        self.prompts = self._prompts()

    def _prompts(self) -> dict[str, str]:
        return {d["prompt_hash"]: d["user"]
                for d in Recording(self.run.dir / RECORDING).exchanges() if "user" in d}

    # sections --------------------------------------------------------------------------
    def summary(self) -> str:
        s = standing(self.rows, self.objective)
        b = s.best
        statuses = Counter(r["status"] for r in self.rows)
        cards = [("best recovered", f"{b['recovered']}/160" if b else "–"),
                 ("above null", _fmt(b and b["above_null"])),
                 ("beyond inputs", _fmt(b and b["beyond_inputs"])),
                 ("spike r", _fmt(b and b["spike_corr"])),
                 ("iterations", f"{len(self.rows)} ({s.expansions} expansions)"),
                 ("training", f"{s.hours:.2f} h"),
                 ("architect cost", f"${sum(c['cost_usd'] for c in self.calls):.2f}"),
                 ("input baseline", f"{_fmt(self.input_recovered)}/160")]
        html = '<div class="cards">' + "".join(
            f'<div class="card">{escape(k)}<b>{v}</b></div>' for k, v in cards) + "</div>"
        html += (f"<p>Best: <b>{escape(b['name'])}</b> ({escape(b['branch'])}); improvement is "
                 f"measured by <b>{escape(self.objective.replace('_', ' '))}</b>, target "
                 f"{self.cfg.get('target')}. " if b else "<p>Nothing was scored. ")
        html += ("Statuses: " + ", ".join(f"{v} {escape(k)}" for k, v in statuses.items())
                 + ". Every score is on held-out test trials; <i>above null</i> counts variables "
                 "the untrained model does not recover, <i>beyond inputs</i> those a linear "
                 "probe of the filtered inputs does not.</p>")
        return html

    def progress(self) -> str:
        if not self.rows:
            return "<p>No iterations.</p>"
        return plots.progress(self.rows, int(self.cfg.get("target", 120)), self.input_recovered)

    def heatmap(self) -> str:
        if not self.scored:
            return "<p>No scored iteration.</p>"
        return ("<p>Rows: scored iterations; columns: the 160 variables grouped by category and "
                "ordered fast to slow within each; colour: held-out r of the probe; dots: "
                "recovered. Blocks no row recovers are the ontological gaps.</p>"
                + plots.heatmap(self.scored, self.vars, float(self.cfg.get("threshold", 0.5))))

    def categories(self) -> str:
        best = standing(self.rows, self.objective).best
        if not best:
            return "<p>No scored iteration.</p>"
        models = [(f"best: {best['name']}", best["scores"]["by_category"]),
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
                    f"{escape(str(self.cfg.get('data_dir', 'DIR')))}</code> adds them here.</p>")
        counts = Counter(v["category"] for v in self.vars)
        return plots.categories(models, counts) + note

    def _input_by_category(self) -> dict:
        s = self.scored[0]["scores"]
        # recovered by the inputs = recovered here and not beyond the inputs, or missed here
        gain = s.get("gain_over_inputs") or []
        out = Counter()
        for v, r, g in zip(self.vars, s["correlations"], gain, strict=False):
            if r - g >= s["threshold"]:
                out[v["category"]] += 1
        return dict(out)

    def pareto(self) -> str:
        pts = []
        for r in self.scored:
            rec = (self.details[r["number"]]["results"] or {}).get("record") or {}
            pts.append({"name": r["name"], "recovered": r["recovered"],
                        "n_params": rec.get("n_params"),
                        "minutes": (rec.get("wall_s") or 0) / 60})
        return plots.pareto(pts) if pts else "<p>No scored iteration.</p>"

    def iterations(self) -> str:
        parts, best = [], None
        fmt = HtmlFormatter(nowrap=False)
        for r in self.rows:
            d = self.details[r["number"]]
            parts.append(self._iteration(r, d, best, fmt))
            score = (r.get("scores") or {}).get(self.objective)
            if score is not None and (best is None or score > best[0]):
                best = (score, r, d["source"])
        return "".join(parts)

    def _iteration(self, r: dict, d: dict, best, fmt) -> str:
        p, check, res = d["proposal"], d["check"], d["results"]
        status = escape(r["status"])
        head = (f'<h3 id="it-{r["number"]}">#{r["number"]} {escape(r["name"])} '
                f'<span class="status-{status}">{status}</span></h3>')
        meta = _table(["architect", "branch", "commit", "properties"], [[
            escape(r["architect"]), f"<code>{escape(r['branch'] or '')}</code>",
            f"<code>{escape((r['commit_sha'] or '')[:12])}</code>",
            escape(", ".join(f"{k}={v}" for k, v in (r.get("properties") or {}).items()))]])
        if r.get("scores"):
            s = r["scores"]
            outcome = (f"recovered <b>{s['recovered']}/160</b>, above null {_fmt(s['above_null'])}"
                       f", beyond inputs {_fmt(s['beyond_inputs'])}, spike r "
                       f"{s['spike_corr']:.3f}, CCA {s['cca']:.3f}; by category: "
                       + escape(", ".join(f"{k} {v}" for k, v in s["by_category"].items())))
            if r.get("failure_kind"):  # scored, but training was cut short
                outcome += (f"<p>Training stopped early: {escape(r['failure_kind'])}: "
                            f"{escape((r.get('failure_message') or '')[:600])}</p>")
        else:
            outcome = (f"{escape(str(r.get('failure_kind')))}: <pre>"
                       f"{escape((r.get('failure_message') or '')[:1500])}</pre>")
        pair = (f'<div class="pair"><div><b>Hypothesis</b> (the proposal\'s reasoning)<p>'
                f'{escape(r.get("reasoning") or "—")}</p></div><div><b>Outcome</b><div>{outcome}'
                "</div></div></div>")
        attempts = r.get("attempts") or []
        tries = ""
        if len(attempts) > 1 or not check.get("ok"):
            tries = "<p><b>Check and repairs</b></p>" + _table(
                ["attempt", "candidate", "outcome"],
                [[str(k + 1), escape(a.get("name") or "(no code)"),
                  "accepted" if not a.get("kind") else
                  f"{escape(a['kind'])}: <pre>{escape((a.get('message') or '')[:600])}</pre>"]
                 for k, a in enumerate(attempts)])
        elif check.get("check"):
            c = check["check"]
            tries = (f"<p>Check: accepted in the {escape(str(check.get('isolation')))} sandbox, "
                     f"{c.get('n_params')} parameters, forward {c.get('forward_ms')} ms.</p>")
        train = ""
        rec = (res or {}).get("record") or {}
        if rec.get("history"):
            train = (f"<p>Training: {rec.get('epochs')} epochs, {rec.get('strategy')} on "
                     f"{escape(str(rec.get('device')))}, {rec.get('wall_s', 0):.0f} s, stopped by "
                     f"{escape(str(rec.get('stopped_by')))}.</p>"
                     + plots.training_curve(rec["history"]))
        code = ""
        if d["source"]:
            code = ("<details><summary>Source</summary>"
                    + highlight(d["source"], PythonLexer(), fmt) + "</details>")
            if best and best[2]:
                diff = "".join(difflib.unified_diff(
                    best[2].splitlines(keepends=True), d["source"].splitlines(keepends=True),
                    f"#{best[1]['number']} {best[1]['name']}", f"#{r['number']} {r['name']}"))
                code += (f"<details><summary>Diff against the best so far (#{best[1]['number']} "
                         f"{escape(best[1]['name'])})</summary>"
                         + highlight(diff or "(identical)\n", DiffLexer(), fmt) + "</details>")
        told = self.prompts.get(p.get("prompt_hash", ""))
        if told:
            code += ("<details><summary>What the architect was told</summary><pre>"
                     f"{escape(told)}</pre></details>")
        return f"<section>{head}{meta}{pair}{tries}{train}{code}</section>"

    def patterns(self) -> str:
        out = []
        for i, r in enumerate(self.rows):
            if r["architect"] == "template":
                continue
            prior = [{**q, "source": self.details[q["number"]]["source"] or ""}
                     for q in self.rows[:i] if q.get("scores")]
            found = patterns.mine(prior, self.vars)
            g = gap.analyse([q["scores"] for q in prior], self.vars,
                            int(self.cfg.get("target", 120))) if prior else None
            exhausted = standing(self.rows[:i], self.objective).exhausted
            told = (f"gap direction <b>{escape(str(g.get('direction')))}</b>, remaining gap "
                    f"{_fmt(g.get('remaining_gap'), 1)}%" if g else "no scored iteration yet")
            items = "".join(f"<li>[{escape(p['type'])}, {p['confidence']:.1f}] "
                            f"{escape(p['description'])}</li>" for p in found)
            out.append(f"<h3>Before #{r['number']} {escape(r['name'])}</h3><p>{told}; "
                       f"exhausted families: {escape(', '.join(exhausted) or 'none')}.</p>"
                       + (f"<ul>{items}</ul>" if items else
                          "<p class=\"muted\">No patterns yet (they need two scored "
                          "iterations).</p>"))
        return "".join(out) or "<p>No expansions.</p>"

    def cost(self) -> str:
        by = {}
        for c in self.calls:
            a = by.setdefault(c["architect"], Counter())
            a["calls"] += 1
            a["errors"] += bool(c.get("error"))
            a["input"] += c["input_tokens"]
            a["output"] += c["output_tokens"]
            a["cost"] += c["cost_usd"]
            a["latency"] += c["latency_s"]
        if not by:
            return ("<p>No architect calls: the templates and the offline architect cost "
                    "nothing.</p>")
        return _table(["architect", "calls", "failed", "input tokens", "output tokens",
                       "cost ($)", "mean latency (s)"],
                      [[escape(k), str(a["calls"]), str(a["errors"]), str(a["input"]),
                        str(a["output"]), f"{a['cost']:.4f}", f"{a['latency'] / a['calls']:.2f}"]
                       for k, a in by.items()], numeric={1, 2, 3, 4, 5, 6})

    def html(self) -> str:
        title = f"descartes-agent run {self.run.id}"
        body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{getattr(self, sid)()}'
                       "</section>" for sid, name in SECTIONS)
        nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name in SECTIONS)
        css = CSS.read_text() + HtmlFormatter().get_style_defs(".highlight")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{escape(title)}</title><style>{css}</style></head><body><header>"
                f"<h1>{escape(title)}</h1><p>{escape(self.run.state())} · architect "
                f"{escape(str(self.cfg.get('architect')))} · data "
                f"{escape(self.row['data_fingerprint'][:16])} · seed {self.cfg.get('seed')}</p>"
                f"</header><nav>{nav}</nav><main>{body}</main></body></html>\n")


def write(run: Run, out: Path | None = None) -> Path:
    path = out or run.dir / "report.html"
    path.write_text(Report(run).html())
    return path
