"""The browser of runs and iterations: `runs`, `log`, `show`, `diff`, `replay`, `report`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agent.console import UsageError, dataset_by_fingerprint, out, say
from agent.inert import fmt
from agent.inert import text as inert_text
from agent.live import one_line


def _cells(*cells) -> list[Text]:
    """Table cells as literal text: a candidate's name is never read as rich markup."""
    return [Text(one_line(c, 200)) for c in cells]

RunDir = Annotated[Path, typer.Option("--run-dir", help="Where runs are kept.")]
RunId = Annotated[str | None, typer.Option(
    "--run", help="A run id or a unique prefix of one (default: the latest run).")]


def iteration_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("#", "branch", "commit", "name", "architect", "recovered", "above null",
                "beyond inputs", "spike r", "status"):
        table.add_column(col, justify="right" if col in ("#", "recovered", "above null",
                                                         "beyond inputs", "spike r") else "left")
    for r in rows:
        scored = r.get("recovered") is not None
        table.add_row(*_cells(
            fmt(r.get("number")), r.get("branch"), one_line(r.get("commit_sha"))[:10],
            r.get("name"), r.get("architect"), f"{fmt(r.get('recovered'))}/160" if scored else "",
            fmt(r.get("above_null")) if scored else "",
            fmt(r.get("beyond_inputs")) if scored else "",
            fmt(r.get("spike_corr")) if scored else "",
            one_line(r.get("status")) + (f" ({one_line(r.get('failure_kind'))})"
                                         if r.get("failure_kind") else "")))
    return table


def log(
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """One row per iteration of a run: branch, commit, name, architect, scores, status."""
    from agent import runs

    r = runs.open_run(run_dir, run_id)
    rows = r.ledger.iterations(r.id)
    if as_json:
        keep = ("number", "branch", "commit_sha", "name", "architect", "status", "recovered",
                "above_null", "beyond_inputs", "spike_corr", "failure_kind", "repairs",
                "train_hours", "properties")
        out.print_json(data=[{k: row.get(k) for k in keep} for row in rows])
        return
    out.print(iteration_table(rows, f"run {r.id} ({r.state()})"))


def show(
    ref: Annotated[str, typer.Argument(help="Branch, commit hash (or prefix) or number.")],
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
) -> None:
    """An iteration's proposal, scores and source."""
    from agent import runs

    r, branch, commit = runs.find(run_dir, ref, run_id)
    proposal = json.loads(r.repo.read(commit, "proposal.json"))
    say(f"{branch} at {commit[:10]} (run {r.id})")
    say(f"{proposal['name']} by {proposal['architect']}, {proposal.get('repairs', 0)} repairs")
    if proposal.get("reasoning"):
        say(f"reasoning: {proposal['reasoning']}")
    say("properties: " + ", ".join(f"{k}={v}" for k, v in proposal["properties"].items()))
    try:
        res = json.loads(r.repo.read(branch, "results.json"))
    except runs.RefError:
        res = None
    check = json.loads(r.repo.read(commit, "check.json"))
    if not check.get("ok"):
        say(f"check: rejected ({check['error']['kind']}): {check['error']['message']}")
    elif res and res.get("scores"):
        s = res["scores"]
        say(f"scores: recovered {s['recovered']}/160 (above null {s['above_null']}, beyond "
             f"control {s.get('beyond_control')}, beyond inputs {s['beyond_inputs']}), "
             f"spike r {s['spike_corr']:.3f}; "
             + ", ".join(f"{k} {v}" for k, v in s["by_category"].items()))
    elif res:
        say(f"training failed ({res.get('failure_kind')}): {res.get('failure_message')}")
    try:
        source = r.repo.read(commit, "model.py")
    except runs.RefError:
        return
    out.print(Syntax(inert_text(source), "python", line_numbers=True, word_wrap=True))


def diff(
    ref_a: Annotated[str, typer.Argument(help="First iteration (branch, hash or number).")],
    ref_b: Annotated[str, typer.Argument(help="Second iteration.")],
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
) -> None:
    """The source diff between two iterations of one run."""
    from agent import runs

    r, _, a = runs.find(run_dir, ref_a, run_id)
    _, _, b = runs.find(run_dir, ref_b, r.id)
    text = r.repo.diff(a, b)
    if not text:
        say("the two sources are identical")
        return
    out.print(Syntax(inert_text(text), "diff", word_wrap=True))


def replay(
    ref: Annotated[str, typer.Argument(help="A commit hash (or prefix), branch or number.")],
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
    sandbox: Annotated[str | None, typer.Option(
        help="auto, docker or process (default: the one it was recorded with).")] = None,
) -> None:
    """Re-train and re-score an iteration's source: recorded against replayed scores.

    Uses the settings, seed and data (by fingerprint) the iteration was recorded with.
    On CPU the two are identical; exit code 1 when they differ.
    """
    from agent import runs
    from agent.evaluator import Evaluator
    from sandbox import runner

    r, branch, commit = runs.find(run_dir, ref, run_id)
    try:
        recorded = json.loads(r.repo.read(branch, "results.json"))
    except runs.RefError:
        raise UsageError(f"{branch} was never trained (its check failed): nothing to "
                         "replay") from None
    source = r.repo.read(commit, "model.py")
    ds = dataset_by_fingerprint(r.row()["config"].get("data_dir", ""), recorded["data_fingerprint"])
    try:
        backend = runner.resolve_backend(sandbox or recorded["sandbox"])
    except runner.SandboxError as e:
        raise UsageError(str(e)) from None
    say(f"replaying {branch} at {commit[:10]} (run {r.id}) in the {backend} sandbox")
    ev = Evaluator(ds, backend=backend, latent_dim=recorded["latent_dim"],
                   threshold=recorded["threshold"], train=recorded["train"])
    again = ev.score(ev.train(source))
    a, b = recorded.get("scores"), again.get("scores")
    if not (a and b):
        say(f"recorded: {recorded['status']}; replayed: {again['status']} "
             f"({again.get('failure_kind')})")
        raise typer.Exit(0 if recorded["status"] == again["status"] else 1)
    table = Table(title="recorded vs replayed (held-out test trials)")
    for col in ("", "recovered", "above null", "beyond inputs", "spike r", "CCA"):
        table.add_column(col, justify="right")
    for label, s in (("recorded", a), ("replayed", b)):
        table.add_row(label, f"{s['recovered']}/160", str(s["above_null"]),
                      str(s["beyond_inputs"]), f"{s['spike_corr']:.4f}", f"{s['cca']:.4f}")
    out.print(table)
    delta = max(abs(x - y) for x, y in zip(a["correlations"], b["correlations"], strict=True))
    same = delta == 0.0 and a["spike_corr"] == b["spike_corr"]
    say("identical: every one of the 160 correlations matches" if same else
         f"different: max |Δr| over the 160 variables {delta:.2e} (expected only on GPU, or "
         f"when training was stopped by its time budget: {recorded['record'].get('stopped_by')})")
    raise typer.Exit(0 if same else 1)


def runs_(
    run_dir: RunDir = Path("generated_models"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """The runs in a run directory: status (running, finished, crashed, interrupted), best,
    age."""
    from agent import runs
    from agent.runs import standing

    rows = []
    for r in runs.runs(run_dir):
        row, its = r.row(), r.ledger.iterations(r.id)
        best = standing(its, row["config"].get("objective", "recovered")).best
        rows.append({"run": r.id, "status": r.state(), "iterations": len(its),
                     "architect": row["config"].get("architect"),
                     "best": best and best["name"], "recovered": best and best["recovered"],
                     "above_null": best and best["above_null"],
                     "age_h": round((time.time() - row["started"]) / 3600, 2),
                     "updated_h": round((time.time() - row["updated"]) / 3600, 2)})
    if as_json:
        out.print_json(data=rows)
        return
    if not rows:
        raise UsageError(f"{run_dir}: no runs here")
    table = Table(title=f"runs in {run_dir}")
    for col in ("run", "status", "iterations", "architect", "best", "recovered",
                "above null", "started", "last update"):
        table.add_column(col)
    for r in rows:
        hint = " (--resume)" if r["status"] in ("crashed", "interrupted") else ""
        table.add_row(*_cells(
            r["run"], r["status"] + hint, str(r["iterations"]), r["architect"], r["best"] or "–",
            "–" if r["recovered"] is None else f"{fmt(r['recovered'])}/160",
            fmt(r["above_null"]), _ago(r["age_h"]), _ago(r["updated_h"])))
    out.print(table)


def _ago(hours: float) -> str:
    return f"{hours * 60:.0f} min ago" if hours < 1 else f"{hours:.1f} h ago" if hours < 48 \
        else f"{hours / 24:.0f} days ago"


def report(
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="The HTML file (default: report.html in the run's folder).")] = None,
    open_it: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
) -> None:
    """Write a run's report: one self-contained HTML file with plots (no network needed)."""
    from agent import report as rep
    from agent import runs

    r = runs.open_run(run_dir, run_id)
    path = rep.write(r, out_file)
    say(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    if open_it:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_)
    for command in (log, show, diff, replay, report):
        app.command()(command)
