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

from agent import live, trust
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


NUMERIC = ("#", "beyond controls", "recovered", "above null", "beyond inputs", "spike r")


def iteration_table(rows: list[dict], title: str) -> Table:
    """One row per iteration; counts on the selection trials, each with its interval where
    the row carries its scores (the ledger's rows do, a run summary's history does not)."""
    table = Table(title=title, caption=Text(
        "counts on the selection trials [95 % interval over trials]; beyond controls: r ≥ the "
        "threshold and above the untrained null, the random network and the inputs"))
    for col in ("#", "parent", "branch", "commit", "name", "architect", *NUMERIC[1:],
                "status"):
        table.add_column(col, justify="right" if col in NUMERIC else "left",
                         no_wrap=col in ("#", "parent"))
    for r in rows:
        scored = r.get("recovered") is not None
        n = ["" if not scored else _with_interval(r, k, suffix) for k, suffix in (
            ("beyond_controls", ""), ("recovered", "/160"), ("above_null", ""),
            ("beyond_inputs", ""))]
        table.add_row(*_cells(
            fmt(r.get("number")), _parent(r.get("lineage")), r.get("branch"),
            one_line(r.get("commit_sha"))[:10],
            r.get("name"), r.get("architect"), *n, fmt(r.get("spike_corr")) if scored else "",
            one_line(r.get("status")) + (f" ({one_line(r.get('failure_kind'))})"
                                         if r.get("failure_kind") else "")
            + (" IMPLAUSIBLE" if r.get("implausible") else "")))
    return table


def _parent(lineage) -> str:
    """`#3`, or `#3 edit` for SEARCH/REPLACE edits of #3: the row's parent in the lineage."""
    parent = lineage.get("parent") if isinstance(lineage, dict) else None
    if not isinstance(parent, int):
        return ""
    return f"#{parent}" + (" edit" if lineage.get("mode") == "edit" else "")


def _with_interval(r: dict, key: str, suffix: str = "") -> str:
    """An iteration's count (its ledger column) and the interval its scores carry."""
    ci = live.interval(r.get("scores") if isinstance(r.get("scores"), dict) else {}, key)
    return f"{fmt(r.get(key))}{suffix}" + (f" {ci}" if ci else "")



def finals_table(rows: list[dict], ranking: list[int],
                 title: str = "final, held out (test trials): mean ± sd over each finalist's "
                 "trainings") -> Table:
    """The finalists (agent.finals.summarise's rows) in the order of `ranking` (the numbers
    of agent.standing.ranked): their test figures."""
    table = Table(title=title, caption=Text(
        "each finalist trained with its own seed and others; [interval]: 95 % over the test "
        "trials, of its search training"))
    for col in ("rank", "#", "name", "beyond controls", "recovered", "spike r", "self-readout",
                "trainings"):
        table.add_column(col, justify="left" if col in ("name", "trainings") else "right")
    rank = {n: k for k, n in enumerate(ranking, 1)}
    for row in sorted(rows, key=lambda f: rank.get(f.get("number"), len(rank) + 1)):
        t = row.get("test") if isinstance(row.get("test"), dict) else {}
        table.add_row(*_cells(
            fmt(rank.get(row.get("number"))), fmt(row.get("number")), row.get("name"),
            live.final_figure(row, "beyond_controls"),
            live.final_figure(row, "recovered", suffix="/160"),
            live.final_figure(row, "spike_corr", 3), live.mean_sd(t.get("self_readout"), 2),
            live.trainings(row)))
    return table


def log(
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """One row per iteration of a run: its parent, branch, commit, name, architect, scores,
    status."""
    from agent import runs

    r = runs.open_run(run_dir, run_id)
    rows = r.ledger.iterations(r.id)
    if as_json:
        keep = ("number", "branch", "commit_sha", "name", "architect", "status",
                "beyond_controls", "recovered", "above_null", "beyond_inputs", "spike_corr",
                "failure_kind", "training", "repairs", "train_hours", "properties", "lineage",
                "implausible")
        out.print_json(data=[{k: row.get(k) for k in keep} for row in rows])
        return
    out.print(iteration_table(rows, f"run {r.id} ({r.state()})"))


def show(
    ref: Annotated[str, typer.Argument(help="Branch, commit hash (or prefix) or number.")],
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
) -> None:
    """An iteration's proposal, scores (selection trials) and source; a finalist's figures
    on the held-out test trials too."""
    from agent import finals, runs

    r, branch, commit = runs.find(run_dir, ref, run_id)
    proposal = json.loads(r.repo.read(commit, "proposal.json"))
    say(f"{branch} at {commit[:10]} (run {r.id})")
    say(f"{proposal['name']} by {proposal['architect']}, {proposal.get('repairs', 0)} repairs")
    if proposal.get("reasoning"):
        say(f"reasoning: {proposal['reasoning']}")
    say("properties: " + ", ".join(f"{k}={v}" for k, v in proposal["properties"].items()))
    if live.lineage_line(proposal.get("lineage")):
        say(live.lineage_line(proposal["lineage"]))
    try:
        res = json.loads(r.repo.read(branch, "results.json"))
    except runs.RefError:
        res = None
    check = json.loads(r.repo.read(commit, "check.json"))
    its = r.ledger.iterations(r.id)
    it = next((i for i in its if i["branch"] == branch), None)
    if not check.get("ok"):
        say(f"check: rejected ({check['error']['kind']}): {check['error']['message']}")
    elif res and res.get("status") == "scored" and isinstance(res.get("scores"), dict):
        s = res["scores"]
        objective = r.row()["config"].get("objective", "recovered")
        say(f"scores: {live.verdict(s, objective)}")
        if it and it.get("implausible"):
            say(f"IMPLAUSIBLE: {it['implausible']}")  # the ledger's flag (agent.trust)
        by = s.get("by_category") if isinstance(s.get("by_category"), dict) else {}
        say("recovered by category: " + ", ".join(f"{k} {fmt(v)}" for k, v in by.items()))
        trained = live.training_text((it or {}).get("training"))
        if trained:
            say(f"training: {trained}")
        if res.get("failure_kind"):  # an old row: scored although its training failed
            say(f"training failed ({res['failure_kind']}): not eligible, never best")
        say(f"parameters: {_params(it or {})}")
    if check.get("ok") and isinstance(check.get("check"), dict):
        c = check["check"]
        warnings = c.get("warnings") if isinstance(c.get("warnings"), list) else []
        say(f"check, {trust.CLAIMED}: {fmt(c.get('n_params'))} parameters, forward "
            f"{fmt(c.get('forward_ms'))} ms, gradient reaches {fmt(c.get('grad_fraction'))} of "
            f"the parameters, " + ("warnings: " + "; ".join(one_line(w, 300) for w in warnings)
                                   if warnings else "no warnings"))
    elif res:
        say(f"training failed ({res.get('failure_kind')}): {res.get('failure_message')}")
    mine = [row for row in r.ledger.finals(r.id) if it and row["number"] == it["number"]]
    if mine:
        (row,) = finals.summarise(mine, its)
        say(live.final_line(row))
        sel = row["selection"] if isinstance(row.get("selection"), dict) else {}
        say(f"  the same trainings on the selection trials: beyond controls "
            f"{live.mean_sd(sel.get('beyond_controls'))}, recovered "
            f"{live.mean_sd(sel.get('recovered'))}/160, spike r "
            f"{live.mean_sd(sel.get('spike_corr'), 3)}")
        for f in mine:
            t = f["test"] if isinstance(f.get("test"), dict) else None
            say(f"  seed {fmt(f.get('seed'))}: " + (
                f"beyond controls {fmt(t.get('beyond_controls'))}, recovered "
                f"{fmt(t.get('recovered'))}/160, spike r {fmt(t.get('spike_corr'))} (test)"
                if f.get("status") == "scored" and t else
                f"failed ({f.get('failure_kind')})"))
    try:
        source = r.repo.read(commit, "model.py")
    except runs.RefError:
        return
    out.print(Syntax(inert_text(source), "python", line_numbers=True, word_wrap=True))


def _params(it: dict) -> str:
    """An iteration's parameters: the host's count, or unverified with the worker's claim."""
    n = trust.counted_params(it)
    if n is not None:
        return f"{n:,} (counted on the host in the trained weights)"
    t = it.get("training") if isinstance(it.get("training"), dict) else {}
    return (f"unverified ({one_line(t.get('n_params_unverified') or 'not counted', 200)}); the "
            f"worker claims {fmt(t.get('n_params_claimed', t.get('n_params')))}")


def diff(
    ref_a: Annotated[str, typer.Argument(help="An iteration (branch, hash or number).")],
    ref_b: Annotated[str | None, typer.Argument(
        help="Another iteration (default: REF_A's parent, REF_A being the child).",
        show_default=False)] = None,
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
) -> None:
    """The source diff between two iterations of one run; with one, from its parent to it."""
    from agent import runs

    r, _, a = runs.find(run_dir, ref_a, run_id)
    if ref_b is None:
        lineage = json.loads(r.repo.read(a, "proposal.json")).get("lineage") or {}
        if not isinstance(lineage.get("parent"), int):
            raise UsageError(f"{ref_a} has no parent (a template, or a run before lineage): "
                             "name a second iteration")
        b, (_, _, a) = a, runs.find(run_dir, str(lineage["parent"]), r.id)
    else:
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
    from agent.library import imports_of
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
                   threshold=recorded["threshold"], margin=recorded.get("margin", 0.05),
                   train=recorded["train"])
    again = ev.measure(ev.train(source, library=imports_of(r.repo, commit, source)))
    a, b = recorded.get("scores"), again.scores
    if not (a and b):
        say(f"recorded: {recorded['status']}; replayed: {again.status} "
             f"({again.failure_kind})")
        raise typer.Exit(0 if recorded["status"] == again.status else 1)
    table = Table(title="recorded vs replayed (selection trials)")
    for col in ("", "beyond controls", "recovered", "above null", "beyond inputs", "spike r",
                "CCA"):
        table.add_column(col, justify="right")
    for name, s in (("recorded", a), ("replayed", b)):
        table.add_row(name, fmt(s.get("beyond_controls")), f"{fmt(s['recovered'])}/160",
                      fmt(s["above_null"]), fmt(s["beyond_inputs"]), fmt(s["spike_corr"], 4),
                      fmt(s["cca"], 4))
    out.print(table)
    if r.state() == "finished":  # the search is over: the locked test trials may be read
        t = ev.final_scores(again.sealed)
        iv = t["intervals"]
        say(f"final, held out (test trials) of this training: beyond controls "
            f"{fmt(t['beyond_controls'])} [{fmt(iv['beyond_controls'][0])}–"
            f"{fmt(iv['beyond_controls'][1])}], recovered {fmt(t['recovered'])}/160 "
            f"[{fmt(iv['recovered'][0])}–{fmt(iv['recovered'][1])}], spike r "
            f"{fmt(t['spike_corr'], 3)}")
    else:
        say("test trials: locked while the run is not finished")
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
    from agent.standing import standing

    rows = []
    for r in runs.runs(run_dir):
        row, its = r.row(), r.ledger.iterations(r.id)
        objective = row["config"].get("objective", "recovered")  # old runs: recovered
        best = standing(its, objective).best
        n_finals = len({f["number"] for f in r.ledger.finals(r.id)})
        rows.append({"run": r.id, "status": r.state(), "iterations": len(its),
                     "architect": row["config"].get("architect"), "objective": objective,
                     "best": best and best["name"],
                     "beyond_controls": best and best.get("beyond_controls"),
                     "recovered": best and best["recovered"],
                     "above_null": best and best["above_null"],
                     "intervals": best and best["scores"].get("intervals"),
                     "finalists": n_finals,
                     "in_flight": r.in_flight() if r.state() == "running" else [],
                     "age_h": round((time.time() - row["started"]) / 3600, 2),
                     "updated_h": round((time.time() - row["updated"]) / 3600, 2)})
    if as_json:
        out.print_json(data=rows)
        return
    if not rows:
        raise UsageError(f"{run_dir}: no runs here")
    table = Table(title=f"runs in {run_dir}", caption="the best by each run's objective; "
                  "counts on the selection trials [95 % interval]")
    for col in ("run", "status", "iterations", "architect", "objective", "best",
                "beyond controls", "recovered", "above null", "finalists", "started",
                "last update"):
        table.add_column(col)
    for r in rows:
        hint = " (--resume)" if r["status"] in ("crashed", "interrupted") else ""
        s = {"intervals": r["intervals"]}
        table.add_row(*_cells(
            r["run"], r["status"] + hint, str(r["iterations"]), r["architect"],
            live.label(r["objective"]), r["best"] or "–",
            "–" if r["best"] is None else f"{fmt(r['beyond_controls'])} "
            f"{live.interval(s, 'beyond_controls')}".strip(),
            "–" if r["best"] is None else f"{fmt(r['recovered'])}/160 "
            f"{live.interval(s, 'recovered')}".strip(),
            fmt(r["above_null"]), str(r["finalists"]) if r["finalists"] else "–",
            _ago(r["age_h"]), _ago(r["updated_h"])))
    out.print(table)
    for r in rows:
        for c in r["in_flight"]:
            say(f"{r['run']} in flight: {live.flight_line(c)}")


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
