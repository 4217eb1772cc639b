"""Watching a run: the loop's events as a live status panel, or as plain lines.

The orchestrator reports events (`event(kind, **data)`) and never prints. On a terminal,
LiveView keeps a rich panel up to date (phase, iteration, what it is doing, a training
bar with the live loss, best so far, budget used, last event) and prints each recorded
iteration above it. Anywhere else (CI, nohup, a pipe) PlainLines writes one line per
event that matters, so a log file tells the same story.

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

from agent.inert import fmt, text


def one_line(value, limit: int = 200) -> str:
    """A candidate's name or message as one line of literal text."""
    return text(value, limit, oneline=True)


def _first_line(value, limit: int) -> str:
    lines = text(value).splitlines()
    return one_line(lines[0] if lines else "", limit)


def iteration_line(it: dict, new_best: bool) -> str:
    if it.get("scores"):
        s = it["scores"] if isinstance(it["scores"], dict) else {}
        outcome = (f"recovered {fmt(it.get('recovered'))}/160 (above null "
                   f"{fmt(it.get('above_null'))}, beyond control {fmt(s.get('beyond_control'))}"
                   f", beyond inputs {fmt(it.get('beyond_inputs'))}), spike r "
                   f"{fmt(it.get('spike_corr'))}" + (" — new best" if new_best else ""))
    else:
        outcome = one_line(it.get("failure_kind"))
    return (f"#{fmt(it.get('number')):>3} {one_line(it.get('name'), 80):<44} "
            f"{one_line(it.get('status'), 20):<8} {outcome}")


class PlainLines:
    """One line per event that matters; epochs are summarised, not streamed."""

    def __init__(self, say):
        self.say = say

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def event(self, kind: str, **d) -> None:
        if kind == "start":
            self.say(f"run {d['run_id']} in {d['dir']} (architect: {d['architect']}, sandbox: "
                     f"{d['backend']}, objective: {d['objective']})")
        elif kind == "phase":
            self.say(f"— {d['phase']} —")
        elif kind == "activity" and d["what"] == "training":
            self.say(f"  training {one_line(d.get('name'))} ({d['backend']} sandbox)")
        elif kind == "repair":
            self.say(f"  repair {d['attempt']}: {_first_line(d.get('feedback'), 200)}")
        elif kind == "architect_failure":
            self.say(f"  architect {d['architect']} failed ({d['failures']} in a row): "
                     f"{one_line(d.get('message'), 2000)}"
                     + ("; the offline architect takes over" if d["fell_back"] else ""))
        elif kind == "recorded":
            self.say(iteration_line(d["iteration"], d["new_best"]))


class LiveView:
    """A rich status panel, refreshed in place, with recorded iterations printed above."""

    def __init__(self, console: Console):
        self.console = console
        self.state = {"phase": "starting", "activity": "", "name": "", "number": None,
                      "epoch": None, "best": None, "last": "", "hours": 0.0, "expansions": 0,
                      "max_expansions": None, "cost": 0.0, "started": time.monotonic()}
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
                     max_expansions=d["max_expansions"])
            self.console.print(f"run {d['run_id']} in {one_line(d['dir'], 1000)}",
                               highlight=False, markup=False)
        elif kind == "phase":
            s["phase"] = d["phase"]
        elif kind == "iteration":
            s.update(number=d["number"], name="", activity="proposing", epoch=None)
        elif kind == "activity":
            s.update(activity=d["what"], name=one_line(d.get("name", s["name"]), 80))
            if d["what"] == "training":
                s["epoch"] = None
        elif kind == "epoch":
            s["epoch"] = d
        elif kind == "repair":
            s["activity"] = "repairing"
            s["last"] = f"repair {d['attempt']}: {_first_line(d.get('feedback'), 120)}"
        elif kind == "architect_failure":
            s["last"] = f"architect {d['architect']} failed: {one_line(d.get('message'), 120)}"
        elif kind == "recorded":
            line = iteration_line(d["iteration"], d["new_best"])
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
        grid.add_row("phase", Text(f"{s['phase']}" + (f" · iteration {s['number']}"
                                                       if s["number"] else "")))
        now = Text(f"{s['activity']} {s['name']}".strip() or "—")
        ep = s["epoch"]
        if s["activity"] == "training" and ep:
            now = Table.grid(padding=(0, 1))
            now.add_row(Text(f"training {s['name']}"),
                        ProgressBar(total=max(ep["total"], 1), completed=ep["epoch"], width=30),
                        Text(f"epoch {fmt(ep.get('epoch'))}/{fmt(ep.get('total'))}  train "
                             f"{fmt(ep.get('train_loss'), 4)}  val {fmt(ep.get('val_loss'), 4)}"))
        grid.add_row("now", now)
        b = s["best"]
        grid.add_row("best", Text(
            f"{one_line(b.get('name'), 80)}: recovered {fmt(b.get('recovered'))}/160 (above "
            f"null {fmt(b.get('above_null'))}, beyond inputs {fmt(b.get('beyond_inputs'))}), "
            f"spike r {fmt(b.get('spike_corr'))}" if b else "nothing scored yet"))
        elapsed = (time.monotonic() - s["started"]) / 60
        grid.add_row("budget", Text(
            f"{s['hours']:.2f} h training · {s['expansions']}"
            f"{'/' + str(s['max_expansions']) if s['max_expansions'] is not None else ''} "
            f"expansions · ${s['cost']:.2f} · {elapsed:.0f} min elapsed"))
        grid.add_row("last", Text(s["last"] or "—"))
        return Panel(grid, title="descartes-agent", border_style="cyan")


def monitor(console: Console, say):
    """LiveView on a terminal, PlainLines elsewhere."""
    return LiveView(console) if console.is_terminal else PlainLines(say)
