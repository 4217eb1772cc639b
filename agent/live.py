"""Watching a run: the loop's events as a live status panel, or as plain lines.

The orchestrator reports events (`event(kind, **data)`) and never prints. On a terminal,
LiveView keeps a rich panel up to date (phase, iteration, what it is doing, a training
bar with the live loss, best so far, budget used, last event) and prints each recorded
iteration above it. Anywhere else (CI, nohup, a pipe) PlainLines writes one line per
event that matters, so a log file tells the same story.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def iteration_line(it: dict, new_best: bool) -> str:
    if it.get("scores"):
        outcome = (f"recovered {it['recovered']}/160 (above null {it['above_null']}, beyond "
                   f"inputs {it['beyond_inputs']}), spike r {it['spike_corr']:.3f}"
                   + (" — new best" if new_best else ""))
    else:
        outcome = str(it.get("failure_kind"))
    return f"#{it['number']:>3} {it['name']:<44} {it['status']:<8} {outcome}"


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
            self.say(f"  training {d['name']} ({d['backend']} sandbox)")
        elif kind == "repair":
            self.say(f"  repair {d['attempt']}: {d['feedback'].splitlines()[0][:200]}")
        elif kind == "architect_failure":
            self.say(f"  architect {d['architect']} failed ({d['failures']} in a row): "
                     f"{d['message']}" + ("; the offline architect takes over"
                                          if d["fell_back"] else ""))
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
            self.console.print(f"run {d['run_id']} in {d['dir']}", highlight=False)
        elif kind == "phase":
            s["phase"] = d["phase"]
        elif kind == "iteration":
            s.update(number=d["number"], name="", activity="proposing", epoch=None)
        elif kind == "activity":
            s.update(activity=d["what"], name=d.get("name", s["name"]))
            if d["what"] == "training":
                s["epoch"] = None
        elif kind == "epoch":
            s["epoch"] = d
        elif kind == "repair":
            s["activity"] = "repairing"
            s["last"] = f"repair {d['attempt']}: {d['feedback'].splitlines()[0][:120]}"
        elif kind == "architect_failure":
            s["last"] = f"architect {d['architect']} failed: {d['message'][:120]}"
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
                        Text(f"epoch {ep['epoch']}/{ep['total']}  train {ep['train_loss']:.4f}"
                             f"  val {ep['val_loss']:.4f}"))
        grid.add_row("now", now)
        b = s["best"]
        grid.add_row("best", Text(
            f"{b['name']}: recovered {b['recovered']}/160 (above null {b['above_null']}, "
            f"beyond inputs {b['beyond_inputs']}), spike r {b['spike_corr']:.3f}"
            if b else "nothing scored yet"))
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
