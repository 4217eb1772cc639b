"""`descartes-agent library list|show NAME|diff`: a run's library, as its branch holds it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agent.browse_cli import RunDir, RunId
from agent.console import UsageError, out, say
from agent.live import one_line


def library(
    action: Annotated[str, typer.Argument(help="list, show or diff.")] = "list",
    name: Annotated[str | None, typer.Argument(
        help="show: the block; diff: the commit to compare the library with (default: its "
        "previous commit).", show_default=False)] = None,
    run_dir: RunDir = Path("generated_models"),
    run_id: RunId = None,
) -> None:
    """A run's library: verified blocks mined from its scored candidates, with their
    signatures and evidence (list), one block's file and record (show), or what the last
    change did (diff). Plain git works too: the branch is `library`."""
    from agent import runs
    from agent.library import BRANCH, Library

    r = runs.open_run(run_dir, run_id)
    lib = Library(r.repo)
    if lib.head is None:
        say(f"run {r.id} has no library yet (blocks enter once a scored candidate's helpers "
            "pass verification)")
        return
    if action == "list":
        table = Table(title=f"library of run {r.id} at {lib.head[:10]}")
        for col in ("name", "kind", "status", "uses", "last", "signature", "evidence"):
            table.add_column(col)
        for e in lib.entries.values():
            table.add_row(*[Text(one_line(c, 300)) for c in (
                e.name, e.kind, e.status, str(len(e.uses)), f"#{e.last_use}" if e.uses else "",
                e.signature(), e.reason if e.status == "rejected" else e.evidence())])
        out.print(table)
    elif action == "show":
        hit = next((e for e in lib.entries.values() if e.name == name), None)
        if hit is None:
            known = ", ".join(e.name for e in lib.entries.values()) or "none"
            raise UsageError(f"no block {name!r} in run {r.id}'s library (blocks: {known})")
        say(f"{hit.name} ({hit.kind}, {hit.status}): {hit.doc or 'no docstring'}")
        say(f"signature: {hit.signature()}")
        say(f"evidence: {hit.evidence()}; first written by #{hit.origin}"
            + (f", carried over from {hit.carried}" if hit.carried else ""))
        if hit.reason:
            say(f"verification: {hit.reason}")
        if hit.code:
            out.print(Syntax(hit.code, "python", line_numbers=True))
    elif action == "diff":
        base = name or f"{BRANCH}~1"
        try:
            text = r.repo.repo.git.diff(base, BRANCH)
        except Exception:
            raise UsageError(f"diff: {base!r} is not a commit of run {r.id}") from None
        out.print(Syntax(text, "diff") if text else Text("no change"))
    else:
        raise UsageError(f"library {action}: expected list, show or diff")


def register(app: typer.Typer) -> None:
    app.command()(library)
