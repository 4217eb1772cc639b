"""The HTML report of a run: one self-contained file (inline SVG and CSS, no network).

Read from the run's ledger, its model repository and its recorded exchanges: the best by
the run's objective (agent.standing) with its intervals, the finalists' figures on the
held-out test trials, progress against iterations and training hours, the iterations × 160
recovery heatmap, recovery by category beside the baselines, a Pareto view, one section
per iteration (hypothesis next to outcome, repairs, training curve, scores, source and
diff), the DreamCoder patterns as they stood at each expansion and what the architect was
told, and the architects' cost. Search figures are on the selection trials (what the
search chose by); test figures exist only for the finalists, scored after it stopped.

Worker-chosen fields (the shape check's parameter count, fingerprint, warnings, gradient
share, forward time) are shown as the worker's claims; the Pareto view's parameters are the
host's count from the returned weights, and a score with r ≥ 0.99 on most variables is
flagged as implausible (agent.trust).

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

from agent import inert, live, trust
from agent import report_plots as plots
from agent.evaluator import as_trained
from agent.finals import summarise
from agent.llm import RECORDING, Recording
from agent.repository import RefError
from agent.runs import Run
from agent.standing import eligible, ranked, standing
from descartes_core import baselines, gap, patterns, variables

CSS = Path(__file__).with_name("report.css")
SECTIONS = (("summary", "Summary"), ("finals", "Final, held out"), ("progress", "Progress"),
            ("heatmap", "Recovery heatmap"), ("categories", "By category"), ("pareto", "Pareto"),
            ("iterations", "Iterations"), ("patterns", "Patterns"), ("cost", "Architect cost"))


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


def _params(r: dict) -> str:
    """An iteration's parameters: the host's count, or unverified with the worker's claim."""
    t = _dict(r.get("training"))
    n = trust.counted_params(r)
    if n is not None:
        return f"{n:,} counted on the host in the trained weights"
    return (f"unverified ({inert.text(t.get('n_params_unverified') or 'not counted', 200)}); "
            f"the worker claims {_fmt(t.get('n_params_claimed', t.get('n_params')))}")


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
        self.eligible = [r for r in self.rows if eligible(r)]  # never a failed training
        self.input_recovered = next((inert.number(r["scores"].get("input_recovered"))
                                     for r in self.scored), None)
        self.prompts = self._prompts()
        self.final, self.final_error = self._finals()

    def _finals(self) -> tuple[list[dict], str | None]:
        """The finalists (agent.finals.summarise), in rank order; or why they cannot be read."""
        try:
            rows = summarise(self.run.ledger.finals(self.run.id), self.rows)
            order = {it["number"]: k for k, it in enumerate(ranked(self.rows, self.objective))}
            return sorted(rows, key=lambda f: order.get(f["number"], len(order))), None
        except Exception as e:  # a ledger row of the wrong shape: said, never raised
            return [], f"{type(e).__name__}: {e}"

    def _prompts(self) -> dict[str, str]:
        return {d["prompt_hash"]: d["user"]
                for d in Recording(self.run.dir / RECORDING).exchanges()
                if isinstance(d.get("user"), str)}

    # sections --------------------------------------------------------------------------
    def summary(self) -> str:
        s = standing(self.rows, self.objective)
        b = s.best
        bs = _dict(b and b.get("scores"))
        said = live.label(self.objective)
        statuses = Counter(inert.text(r["status"]) for r in self.rows)
        cost = sum(inert.number(c.get("cost_usd")) or 0.0 for c in self.calls)
        top = _dict(self.final[0]) if self.final else {}
        cards = [(f"best by {said}", live.count(bs, self.objective) if b else "–")]
        cards += [(live.label(k), live.count(bs, k, "/160" if k == "recovered" else ""))
                  for k in ("beyond_controls", "recovered") if k != self.objective]
        cards += [("spike r", live.spike(bs)),
                  ("self-readout", _fmt(bs.get("self_readout"), 2)),
                  ("controls recover", live.controls(bs) if b else "–"),
                  ("final, held out: beyond controls",
                   live.mean_sd(_dict(top.get("test")).get("beyond_controls"))),
                  ("iterations", f"{len(self.rows)} ({_fmt(s.expansions)} expansions)"),
                  ("training", f"{_fmt(s.hours, 2)} h"),
                  ("architect cost", f"${_fmt(cost, 2)}")]
        html = '<div class="cards">' + "".join(
            f'<div class="card">{h(k)}<b>{h(v)}</b></div>' for k, v in cards) + "</div>"
        html += (f"<p>Best: <b>{h(b.get('name'))}</b> ({h(b.get('branch'))}), by <b>{h(said)}"
                 f"</b>: {h(live.verdict(bs, self.objective))}. Target "
                 f"{h(self.cfg.get('target'))} recovered. " if b else
                 "<p>Nothing was scored without a training failure. ")
        flagged = [r for r in self.rows if r.get("implausible")]
        if flagged:
            html += ('</p><p class="implausible"><b>Implausible scores</b> (r ≥ '
                     f"{trust.IMPLAUSIBLE_R} on most variables: the answers may have leaked "
                     "into the sandbox): " + ", ".join(
                         f'<a href="#it-{inert.slug(_fmt(r.get("number")))}">#'
                         f'{_fmt(r.get("number"))}</a> {h(r.get("name"), 80)}'
                         + (" (the best)" if b is not None and r.get("number") == b.get("number")
                            else "") for r in flagged) + ".</p><p>")
        html += ("Statuses: " + ", ".join(f"{v} {h(k)}" for k, v in statuses.items()) + ".</p>"
                 "<p>Every figure of the search is on the <b>selection trials</b>, with its 95 % "
                 "bootstrap interval over those trials in brackets: the best is the first "
                 "eligible iteration (scored, its training did not fail), then each that leads "
                 "it on the objective on at least 90 % of the paired resamples. The <b>test "
                 "trials</b> were scored only for the finalists, after the search stopped "
                 "(<a href=\"#finals\">Final, held out</a>). <i>Beyond controls</i> counts "
                 "variables with r ≥ the threshold and above every control by the margin: the "
                 "untrained model (per variable its best seed), a random recurrent network of "
                 "the same width and a linear probe of the filtered inputs; <i>above null</i>, "
                 "<i>beyond random</i> and <i>beyond inputs</i> count recovered variables one "
                 "control does not recover. The self-readout is how well the latents predict "
                 "the model's own outputs (near 1: they make the output; low: a side "
                 "channel).</p>")
        return html

    def finals(self) -> str:
        if self.final_error:
            return (f'<p class="section-error">The finals could not be read '
                    f"({h(self.final_error, 300)}).</p>")
        if not self.final:
            why = ("the run has not finished" if self.run.state() != "finished" else
                   "nothing was eligible" if not self.eligible else
                   f"it asked for {h(self.cfg.get('finalists'))} finalists")
            return f"<p>No finalist was scored on the test trials: {why}.</p>"
        rows = []
        for k, f in enumerate(map(_dict, self.final), 1):
            t, sel = _dict(f.get("test")), _dict(f.get("selection"))
            c = _dict(f.get("controls"))
            number = _fmt(f.get("number"))
            rows.append([
                str(k), f'<a href="#it-{inert.slug(number)}">#{number}</a> {h(f.get("name"))}',
                h(live.trainings(f)), h(live.final_figure(f, "beyond_controls")),
                h(live.final_figure(f, "recovered")), h(live.final_figure(f, "spike_corr", 3)),
                h(live.mean_sd(t.get("self_readout"), 2)),
                h(f"null {_fmt(c.get('null_recovered'))}, random network "
                  f"{_fmt(c.get('random_recovered'))}, inputs {_fmt(c.get('input_recovered'))}"),
                h(f"{live.mean_sd(sel.get('beyond_controls'))} / "
                  f"{live.mean_sd(sel.get('recovered'))}")])
        return ("<p>The finalists: the best, then the next eligible iterations by the objective, "
                "each trained again with other seeds and scored once on the locked <b>test "
                "trials</b>. Figures are mean ± sd over the trainings that succeeded; in "
                "brackets the 95 % interval over test trials of its search training; the "
                "controls are what each control recovers on the same test trials. The last "
                "column is the same trainings on the selection trials, for comparison: a drop "
                "from selection to test is what choosing by selection cost.</p>"
                + _table(["rank", "finalist", "trainings", "beyond controls", "recovered /160",
                          "spike r", "self-readout", "controls recover (test)",
                          "selection: beyond controls / recovered"], rows,
                         numeric={0, 3, 4, 5, 6})
                + "".join(f"<p>Events of #{h(_fmt(f.get('number')))} on the test trials (its "
                          f"search training): {h(live.events({'events': f.get('test_events')}))}"
                          ".</p>" for f in map(_dict, self.final)
                          if live.events({"events": f.get("test_events")})))

    def progress(self) -> str:
        if not self.rows:
            return "<p>No iterations.</p>"
        return ("<p>On the selection trials: the lines are the counts of the best by "
                f"<b>{h(live.label(self.objective))}</b> as the search went (a new best must "
                "lead beyond the trials' noise), the points each eligible iteration's count on "
                "it with its 95 % interval.</p>"
                + plots.progress(self.rows, inert.number(self.cfg.get("target")) or 120,
                                 self.input_recovered, self.objective))

    def heatmap(self) -> str:
        if not self.eligible:
            return "<p>No scored iteration.</p>"
        return ("<p>Rows: scored iterations whose training did not fail; columns: the 160 "
                "variables grouped by category and ordered fast to slow within each; colour: r "
                "of the probe on the selection trials; dots: recovered. Blocks no row recovers "
                "are the ontological gaps.</p>"
                + plots.heatmap(self.eligible, self.vars,
                                float(inert.number(self.cfg.get("threshold")) or 0.5)))

    def categories(self) -> str:
        best = standing(self.rows, self.objective).best
        if not best:
            return "<p>No scored iteration.</p>"
        models = [(f"best: {inert.text(best.get('name'), 40, oneline=True)}",
                   _dict(_dict(best.get("scores")).get("by_category"))),
                  ("Volterra–Laguerre (input baseline)", self._input_by_category())]
        path = baselines.results_path(self.row["data_fingerprint"])
        note = ("<p>Recovered variables per category on the selection trials, the best beside "
                "the baselines.</p>")
        if path.exists():
            models += [(b.get("name"), _dict(b["selection"]).get("by_category"))
                       for b in map(_dict, _list(json.loads(path.read_text())))
                       if isinstance(b.get("selection"), dict)
                       and b.get("name") != "volterra_laguerre"]
        else:
            note += ("<p class=\"muted\">The LSTM and plain neural ODE baselines have not been "
                    "run on this dataset: <code>descartes-agent baselines --data-dir "
                    f"{h(self.cfg.get('data_dir', 'DIR'))}</code> adds them here.</p>")
        counts = Counter(v["category"] for v in self.vars)
        return plots.categories(models, counts) + note

    def _input_by_category(self) -> dict:
        s = self.scored[0]["scores"]  # the inputs' probes are the same whatever the model
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
        pts, unverified = [], []
        for r in self.eligible:
            rec = _dict(self.details[r["number"]]["results"].get("record"))
            wall_s = inert.number(rec.get("wall_s"))  # the sandbox's word: checked, not trusted
            n = trust.counted_params(r)  # the host's count, never the worker's claim
            if n is None:
                unverified.append(f"#{_fmt(r.get('number'))} {inert.text(r.get('name'), 40)}")
            pts.append({"name": inert.text(r.get("name"), 18, oneline=True),
                        "count": inert.number(_dict(r.get("scores")).get(self.objective)),
                        "n_params": n, "minutes": None if wall_s is None else wall_s / 60})
        if not pts:
            return "<p>No scored iteration.</p>"
        return (plots.pareto(pts, f"{live.label(self.objective)} of 160 (selection)")
                + "<p>Parameters as counted on the host in the trained weights each job "
                "returned, never the worker's claim."
                + (f" Unverified (no weights came back), left out of the parameters panel: "
                   f"{h('; '.join(unverified))}." if unverified else "") + "</p>")

    def iterations(self) -> str:
        parts = []
        fmt = HtmlFormatter(nowrap=False)
        finals = {f.get("number"): f for f in map(_dict, self.final)}
        for i, r in enumerate(self.rows):
            d = self.details[r["number"]]
            b = standing(self.rows[:i], self.objective).best  # the best before this one
            best = b and (None, b, self.details[b["number"]]["source"])
            parts.append(_guarded(self._iteration, r, d, best, fmt, finals.get(r["number"])))
        return "".join(parts)

    def _iteration(self, r: dict, d: dict, best, fmt, final: dict | None = None) -> str:
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
            outcome = (f"<b>{h(live.counts(s, self.objective))}</b> on the selection trials; "
                       f"{h(live.label('above_null'))} {h(live.count(s, 'above_null'))}, beyond "
                       f"random {h(live.count(s, 'beyond_random'))}, beyond inputs "
                       f"{h(live.count(s, 'beyond_inputs'))}; controls recover "
                       f"{h(live.controls(s))}; spike r {h(live.spike(s))}, self-readout "
                       f"{_fmt(s.get('self_readout'), 2)}, CCA {_fmt(s.get('cca'))}; by "
                       f"category: {h(by_category)}")
            if live.events(s):
                outcome += f"<p>Events: {h(live.events(s))}.</p>"
            t = _dict(r.get("training"))
            if t.get("stopped_by") == "time_budget" or t.get("note"):  # the record says more
                outcome += (f"<p>Training: {h(live.training_text(t))}"
                            + (" (a success: the budget is not a failure)" if t.get(
                                "stopped_by") == "time_budget" else "") + ".</p>")
            if not eligible(r):  # an old row: scored, although its training failed
                outcome += (f"<p>Training failed: {h(r.get('failure_kind'))}: "
                            f"{h(r.get('failure_message'), 600)}. Not eligible: never the best "
                            "nor a finalist.</p>")
            if r.get("implausible"):
                outcome += f'<p class="implausible"><b>Implausible</b>: {h(r["implausible"])}</p>'
            outcome += f"<p>Parameters: {h(_params(r))}.</p>"
            if final:
                outcome += f'<p class="final"><b>{h(live.final_line(final))}</b></p>'
        else:
            outcome = (f"{h(r.get('failure_kind'))}: <pre>"
                       f"{h(r.get('failure_message'), 1500)}</pre>")
        lineage = live.lineage_line(r.get("lineage"))
        pair = (f'<div class="pair"><div><b>Hypothesis</b> (the proposal\'s reasoning)<p>'
                f'{h(r.get("reasoning") or "—")}</p>'
                + (f"<p>{h(lineage)}</p>" if lineage else "")
                + f'</div><div><b>Outcome</b><div>{outcome}</div></div></div>')
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
            c = check["check"]  # what the worker wrote: each field checked, none trusted
            warnings = "; ".join(inert.text(w, 300) for w in _list(c.get("warnings")))
            tries = (f"<p>Check: accepted in the {h(check.get('isolation'))} sandbox; "
                     f"{h(trust.CLAIMED)}: {_fmt(c.get('n_params'))} parameters, forward "
                     f"{_fmt(c.get('forward_ms'), 1)} ms, gradient reaches "
                     f"{_fmt(c.get('grad_fraction'), 3)} of the parameters"
                     + (f"; warnings: {h(warnings, 1500)}" if warnings else "; no warnings")
                     + ".</p>")
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
            prior = [{**q, "properties": _dict(q.get("properties")),  # as the brief saw them
                      "source": self.details[q["number"]]["source"] or ""}
                     for q in map(as_trained, self.rows[:i]) if eligible(q)]
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
