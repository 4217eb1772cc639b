"""Watching a run: the loop's events as a live status panel, or as plain lines.

The orchestrator reports events (`event(kind, **data)`) and never prints. On a terminal,
LiveView keeps a rich panel up to date (phase, iteration or finalist, what it is doing, a
training bar with the live loss, the best by the objective, budget used, last event) and
prints each recorded iteration and each final training above it. Anywhere else (CI, nohup,
a pipe) PlainLines writes one line per event that matters, so a log file tells the same
story. An iteration's line carries the verdict on the selection trials (counts with their
intervals, the controls beside, spike r, self-readout); the finals phase is said as what it
is, the only scoring on the held-out test trials.

Names and messages come from the candidates: each is shown as literal text (rich `Text`, or
printed with markup off), one line, control characters replaced, so `[/]` or
`[link=…]` is only characters and no escape sequence reaches the terminal.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agent.inert import MISSING, fmt, number, text
from agent.standing import eligible


def one_line(value, limit: int = 200) -> str:
    """A candidate's name or message as one line of literal text."""
    return text(value, limit, oneline=True)


def _first_line(value, limit: int) -> str:
    lines = text(value).splitlines()
    return one_line(lines[0] if lines else "", limit)


# the verdict as text -------------------------------------------------------------------
# Shared by the live view, `log`/`show`/`runs`, `run`'s summary, `baselines` and the report
# (which escapes it): every figure is validated by agent.inert, so a score dict read from
# a ledger or a results file can hold anything and these still print "–".

LABELS = {"beyond_controls": "beyond controls", "recovered": "recovered",
          "above_null": "above null", "beyond_random": "beyond random",
          "beyond_inputs": "beyond inputs"}
"""scoring.COUNTS as they are said."""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def label(objective) -> str:
    """An objective (a config value: untrusted) as it is said."""
    return LABELS.get(objective) or one_line(objective, 40).replace("_", " ")


def figure(value, digits: int = 1) -> str:
    """A count as an integer when it is one (an interval's end is a quantile: 8.0 or 8.5),
    else to `digits` places; "–" unless a real number."""
    n = number(value)
    if type(n) is float and n.is_integer() and abs(n) < 1e15:
        return str(int(n))
    return fmt(n, digits)


def interval(s: dict, key: str, digits: int = 1) -> str:
    """ "[lo–hi]", the 95 % bootstrap interval over trials of `key` in scores `s` ("" when
    absent or not two numbers)."""
    iv = _dict(_dict(s).get("intervals")).get(key)
    if not isinstance(iv, list | tuple) or len(iv) != 2 or None in map(number, iv):
        return ""
    dash = " to " if min(iv) < 0 else "–"  # "[-0.07 to 0.02]": never a dash beside a minus
    return f"[{figure(iv[0], digits)}{dash}{figure(iv[1], digits)}]"


def count(s: dict, key: str, suffix: str = "") -> str:
    """A count of scores `s` with its interval: "12 [8–15]" (or "61/160 [55–66]")."""
    ci = interval(s, key)
    return f"{fmt(_dict(s).get(key))}{suffix}" + (f" {ci}" if ci else "")


def spike(s: dict) -> str:
    """Spike r with its interval: "0.312 [0.280–0.341]"."""
    ci = interval(s, "spike_corr", 3)
    return fmt(_dict(s).get("spike_corr")) + (f" {ci}" if ci else "")


def counts(s: dict, objective: str = "beyond_controls") -> str:
    """The objective's count first, then beyond controls and recovered, each with its
    interval: "beyond controls 12 [8–15], recovered 61/160 [55–66]"."""
    keys = dict.fromkeys((objective, "beyond_controls", "recovered"))
    return ", ".join(f"{label(k)} {count(s, k, '/160' if k == 'recovered' else '')}"
                     for k in keys if k in LABELS)


def controls(s: dict) -> str:
    """What the controls recover on the same trials: "null 3 (best of 3 seeds), random
    network 20, inputs 30"."""
    s = _dict(s)
    seeds = number(s.get("null_seeds"))
    null = fmt(s.get("null_recovered")) + (f" (best of {fmt(seeds)} seeds)" if seeds else "")
    return (f"null {null}, random network {fmt(s.get('random_recovered'))}, inputs "
            f"{fmt(s.get('input_recovered'))}")


def trials(s: dict) -> str:
    """Which trials scores `s` are on, as said beside them."""
    on = one_line(_dict(s).get("on"), 20)
    return {"selection": "selection trials", "test": "final, held out (test trials)"}.get(
        on, f"{on} trials" if on else "held-out trials")


def events(s: dict) -> str:
    """The event scores of a score dict in a line ("" when it has none): does the rate
    commit to bursts (descartes_core.events)."""
    e = _dict(_dict(s).get("events"))
    if not e:
        return ""
    regimes = ", ".join(f"{one_line(k, 20)} {fmt(v, 2)}"
                        for k, v in list(_dict(e.get("r_by_regime")).items())[:6])
    return (f"spread ratio {fmt(e.get('spread_ratio'), 2)}, bursts/trial "
            f"{fmt(e.get('bursts_pred'), 1)} (true {fmt(e.get('bursts_true'), 1)}), burst timing "
            f"{fmt(e.get('burst_timing_ms'), 1)} ms, hits ±10 ms {fmt(e.get('burst_hits'), 2)}, "
            f"distance@10ms {fmt(e.get('distance_10ms'), 2)}, spike r by regime: "
            f"{regimes or MISSING}")


def verdict(s: dict, objective: str = "beyond_controls") -> str:
    """One score dict in a line: counts with intervals and the trials they are on, the
    controls beside, spike r with its interval, the self-readout, the event scores."""
    s = _dict(s)
    ev = events(s)
    return (f"{counts(s, objective)} on {trials(s)}; controls recover {controls(s)}; spike r "
            f"{spike(s)}, self-readout {fmt(s.get('self_readout'), 2)}"
            + (f"; {ev}" if ev else ""))


def mean_sd(value, digits: int = 1) -> str:
    """A finalist's [mean, sd] over its trainings as "12.3 ± 1.5" ("–" when absent)."""
    if not isinstance(value, list | tuple) or len(value) != 2 or None in map(number, value):
        return MISSING
    return f"{fmt(value[0], digits)} ± {fmt(value[1], digits)}"


def final_figure(row: dict, key: str, digits: int = 1, suffix: str = "") -> str:
    """A finalist's figure on the test trials, mean ± sd over its trainings, and the
    interval of its search training's test count: "12.3 ± 1.5 [8–15]"."""
    row = _dict(row)
    ci = interval({"intervals": row.get("test_intervals")}, key, 3 if digits == 3 else 1)
    return mean_sd(_dict(row.get("test")).get(key), digits) + suffix + (f" {ci}" if ci else "")


def trainings(row: dict) -> str:
    """How many of a finalist's trainings were scored, and how the others failed."""
    row = _dict(row)
    failed = row.get("failed") if isinstance(row.get("failed"), list) else []
    return (f"{fmt(row.get('scored'))} of {fmt(row.get('trainings'))} trainings"
            + (f", failed: {', '.join(one_line(k, 40) for k in failed)}" if failed else ""))


def final_line(row: dict) -> str:
    """A finalist (agent.finals.summarise's row) in a line: mean ± sd over its trainings on
    the locked test trials, its search training's test intervals and controls."""
    row = _dict(row)
    c = _dict(row.get("controls"))
    return (f"final, held out (test trials), mean ± sd over {trainings(row)} [95 % interval "
            f"of its search training]: beyond controls {final_figure(row, 'beyond_controls')}"
            f", recovered {final_figure(row, 'recovered', suffix='/160')}, spike r "
            f"{final_figure(row, 'spike_corr', 3)}, self-readout "
            f"{mean_sd(_dict(row.get('test')).get('self_readout'), 2)}; controls recover null "
            f"{fmt(c.get('null_recovered'))}, random network {fmt(c.get('random_recovered'))}, "
            f"inputs {fmt(c.get('input_recovered'))}")


def training_text(training) -> str:
    """How a training ended (a time budget reached is a success, not a failure) and the
    strategy it fell back to: "budget reached after 12 epochs"."""
    t = _dict(training)
    epochs, stop = fmt(t.get("epochs")), t.get("stopped_by")
    parts = []
    if stop == "time_budget":
        parts.append(f"budget reached after {epochs} epochs")
    elif stop == "early_stopping":
        parts.append(f"early stopping after {epochs} epochs")
    elif stop == "max_epochs":
        parts.append(f"{epochs} epochs, the cap")
    elif number(t.get("epochs")) is not None:
        parts.append(f"{epochs} epochs")
    if t.get("note"):  # a fallback: what was trained is not what was declared
        parts.append(f"trained {one_line(t.get('strategy'), 40) or MISSING}: "
                     f"{one_line(t['note'], 200)}")
    return "; ".join(parts)


def iteration_line(it: dict, new_best: bool, objective: str = "beyond_controls") -> str:
    s = it.get("scores")
    if eligible(it):
        trained = training_text(it.get("training"))
        outcome = (f"{counts(s, objective)} on selection trials (controls recover "
                   f"{controls(s)}), spike r {spike(s)}, self-readout "
                   f"{fmt(_dict(s).get('self_readout'), 2)}" + (f"; {trained}" if trained else "")
                   + (" — new best" if new_best else ""))
    elif isinstance(s, dict):  # an old row: scored although its training failed
        outcome = f"training failed ({one_line(it.get('failure_kind'))}): never best"
    else:
        outcome = one_line(it.get("failure_kind"))
    return (f"#{fmt(it.get('number')):>3} {one_line(it.get('name'), 80):<44} "
            f"{one_line(it.get('status'), 20):<8} {outcome}")


def final_event_line(d: dict) -> str:
    """A finalist's training starting (agent.finals' "final" event)."""
    return (f"final {fmt(d.get('rank'))}/{fmt(d.get('finalists'))}: #{fmt(d.get('number'))} "
            f"{one_line(d.get('name'), 80)}, training {fmt(d.get('training'))}/"
            f"{fmt(d.get('trainings'))} (seed {fmt(d.get('seed'))}), scored on the held-out "
            "test trials")


class PlainLines:
    """One line per event that matters; epochs are summarised, not streamed."""

    def __init__(self, say):
        self.say = say
        self.objective = "beyond_controls"

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def event(self, kind: str, **d) -> None:
        if kind == "start":
            self.objective = d["objective"]
            self.say(f"run {d['run_id']} in {d['dir']} (architect: {d['architect']}, sandbox: "
                     f"{d['backend']}, objective: {d['objective']})")
        elif kind == "phase":
            self.say(f"— {d['phase']} —" if d["phase"] != "finals" else
                     "— finals: the finalists, trained again with other seeds and scored on "
                     "the held-out test trials —")
        elif kind == "final":
            self.say(f"  {final_event_line(d)}")
        elif kind == "activity" and d["what"] == "training":
            where = f", {one_line(d['where'], 120)}" if d.get("where") else ""
            self.say(f"  training #{d.get('number', '?')} {one_line(d.get('name'))} "
                     f"({d['backend']} sandbox{where})")
        elif kind == "cancelled":
            self.say(f"  cancelled #{d['number']} {one_line(d.get('name'))}: {d['why']}")
        elif kind == "library":
            for change in d["changes"]:
                self.say(f"  library: {one_line(change, 300)}")
        elif kind == "repair":
            self.say(f"  repair {d['attempt']}: {_first_line(d.get('feedback'), 200)}")
        elif kind == "architect_failure":
            self.say(f"  architect {d['architect']} failed ({d['failures']} in a row): "
                     f"{one_line(d.get('message'), 2000)}"
                     + ("; the offline architect takes over" if d["fell_back"] else ""))
        elif kind == "recorded":
            self.say(iteration_line(d["iteration"], d["new_best"], self.objective))


class LiveView:
    """A rich status panel, refreshed in place, with recorded iterations printed above."""

    def __init__(self, console: Console):
        self.console = console
        self.state = {"phase": "starting", "activity": "", "name": "", "number": None,
                      "epoch": None, "best": None, "last": "", "hours": 0.0, "expansions": 0,
                      "max_expansions": None, "cost": 0.0, "started": time.monotonic(),
                      "objective": "beyond_controls", "final": None}
        self.live = Live(self, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def event(self, kind: str, **d) -> None:
        s = self.state
        if kind == "start":
            s.update(run_id=d["run_id"], header=f"{d['architect']} architect · {d['backend']} "
                     f"sandbox · objective {d['objective']} ≥ {d['target']}",
                     max_expansions=d["max_expansions"], objective=d["objective"])
            self.console.print(f"run {d['run_id']} in {one_line(d['dir'], 1000)}",
                               highlight=False, markup=False)
        elif kind == "phase":
            s["phase"] = d["phase"]
            if d["phase"] == "finals":
                s.update(number=None, activity="", name="")
        elif kind == "final":  # a finalist's training: its epochs drive the same bar
            line = final_event_line(d)
            self.console.print(line, highlight=False, markup=False)
            s.update(final=d, activity="training", name=one_line(d.get("name"), 80),
                     epoch=None, last=line)
        elif kind == "iteration":
            s.update(number=d["number"], name="", activity="proposing", epoch=None)
        elif kind == "activity":
            s.update(activity=d["what"], name=one_line(d.get("name", s["name"]), 80))
            if d["what"] == "training":
                s["epoch"] = None
        elif kind == "epoch":
            s["epoch"] = d
        elif kind == "flight":  # every candidate training now, and where
            s["flight"] = d["candidates"]
            if len(d["candidates"]) == 1 and s["activity"] == "training":
                s["epoch"] = d["candidates"][0]["epoch"]
        elif kind == "cancelled":
            s["last"] = f"cancelled #{d['number']} {one_line(d.get('name'), 80)}: {d['why']}"
        elif kind == "library":
            for change in d["changes"]:
                self.console.print(f"  library: {one_line(change, 300)}", highlight=False,
                                   markup=False)
        elif kind == "repair":
            s["activity"] = "repairing"
            s["last"] = f"repair {d['attempt']}: {_first_line(d.get('feedback'), 120)}"
        elif kind == "architect_failure":
            s["last"] = f"architect {d['architect']} failed: {one_line(d.get('message'), 120)}"
        elif kind == "recorded":
            line = iteration_line(d["iteration"], d["new_best"], s["objective"])
            self.console.print(line, highlight=False, markup=False)
            s.update(last=" ".join(line.split()), best=d["best"], hours=d["hours"],
                     expansions=d["expansions"], cost=d["cost"], activity="", epoch=None)
        self.live.refresh()

    def __rich__(self):
        s = self.state
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", justify="right")
        grid.add_column()
        grid.add_row("run", Text(f"{s.get('run_id', '')}  {s.get('header', '')}"))
        f = s["final"] if s["phase"] == "finals" else None
        where = (f" · finalist {fmt(f.get('rank'))}/{fmt(f.get('finalists'))} (#"
                 f"{fmt(f.get('number'))}), training {fmt(f.get('training'))}/"
                 f"{fmt(f.get('trainings'))}, held-out test trials" if f else
                 f" · iteration {s['number']}" if s["number"] else "")
        grid.add_row("phase", Text(f"{s['phase']}{where}"))
        now = Text(f"{s['activity']} {s['name']}".strip() or "—")
        ep = s["epoch"]
        if s["activity"] == "training" and ep:
            now = Table.grid(padding=(0, 1))
            now.add_row(Text(f"training {s['name']}"),
                        ProgressBar(total=max(ep["total"], 1), completed=ep["epoch"], width=30),
                        Text(f"epoch {fmt(ep.get('epoch'))}/{fmt(ep.get('total'))}  train "
                             f"{fmt(ep.get('train_loss'), 4)}  val {fmt(ep.get('val_loss'), 4)}"))
        grid.add_row("now", now)
        flight = s.get("flight") or []
        if len(flight) > 1 and s["phase"] != "finals":
            grid.add_row("in flight", Text("\n".join(flight_line(c) for c in flight)))
        b = s["best"]
        sb = _dict(b and b.get("scores"))
        grid.add_row("best", Text(
            f"#{fmt(b.get('number'))} {one_line(b.get('name'), 80)}: "
            f"{counts(sb, s['objective'])} on selection trials (controls recover "
            f"{controls(sb)}), spike r {spike(sb)}" if b else "nothing eligible yet"))
        elapsed = (time.monotonic() - s["started"]) / 60
        grid.add_row("budget", Text(
            f"{s['hours']:.2f} h training · {s['expansions']}"
            f"{'/' + str(s['max_expansions']) if s['max_expansions'] is not None else ''} "
            f"expansions · ${s['cost']:.2f} · {elapsed:.0f} min elapsed"))
        grid.add_row("last", Text(s["last"] or "—"))
        return Panel(grid, title="descartes-agent", border_style="cyan")


def flight_line(c: dict) -> str:
    """A candidate in flight: its number, name, where it runs and its newest epoch."""
    ep = _dict(c.get("epoch"))
    epoch = f", epoch {fmt(ep.get('epoch'))}/{fmt(ep.get('total'))}" if ep else ""
    return (f"#{fmt(c.get('number'))} {one_line(c.get('name'), 60)} on "
            f"{one_line(c.get('where'), 80)}{epoch}")


def monitor(console: Console, say):
    """LiveView on a terminal, PlainLines elsewhere."""
    return LiveView(console) if console.is_terminal else PlainLines(say)


def lineage_line(lineage) -> str:
    """`parent #3 (why) → this; inspirations #1, #2; island 0; edits` of a proposal."""
    if not isinstance(lineage, dict) or not isinstance(lineage.get("island"), int):
        return ""
    why = lineage.get("why") if isinstance(lineage.get("why"), dict) else {}
    parent = lineage.get("parent")
    parts = [f"parent #{parent} ({one_line(why.get(str(parent)), 120)})"
             if isinstance(parent, int) else "no parent"]
    listed = lineage.get("inspirations")
    insp = [i for i in listed if isinstance(i, int)] if isinstance(listed, list) else []
    if insp:
        parts.append("inspirations " + ", ".join(f"#{i}" for i in insp))
    parts.append(f"island {lineage['island']}")
    parts.append("SEARCH/REPLACE edits of the parent" if lineage.get("mode") == "edit"
                 else "a whole file")
    return "lineage: " + "; ".join(parts)
