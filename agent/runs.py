"""Runs on disk: finding a run in a run directory, its state, and an iteration by
reference (its standing is agent.standing's).

A run directory holds one folder per run (named by its id, which sorts by start time);
the folder is the git model repository, with ``ledger.sqlite`` and, for LLM architects,
``exchanges.jsonl`` beside the models (git-excluded). What `log`, `show`, `diff`,
`replay`, `runs`, `report` and `--resume` read. Nothing here imports torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from agent import driver_lock
from agent.ledger import Ledger
from agent.repository import ModelRepository, RefError


class RunNotFound(Exception):
    """No run, or no such run, in the run directory."""


@dataclass
class Run:
    id: str
    dir: Path

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.dir / "ledger.sqlite")

    @cached_property
    def repo(self) -> ModelRepository:
        if not (self.dir / ".git").is_dir():  # never create one while only reading
            raise RunNotFound(f"{self.dir}: no model repository (not a run folder?)")
        return ModelRepository(self.dir)

    def row(self) -> dict:
        rows = [r for r in self.ledger.runs() if r["id"] == self.id]
        if not rows:
            raise RunNotFound(f"{self.dir}: the ledger holds no run {self.id}")
        return {**rows[0], "config": json.loads(rows[0]["config"])}

    def state(self) -> str:
        """running, finished, interrupted (Ctrl-C), or crashed (no driver holds its lock, on
        this host or another); the last two resume with --resume."""
        row = self.row()
        if row["status"] != "running":
            return row["status"]
        return "running" if driver_lock.held(self.dir) else "crashed"

    def in_flight(self) -> list[dict]:
        """The candidates the driver has training now (its flight.json): number, name,
        where, since, newest epoch. Bounded, and only dicts pass."""
        try:
            data = json.loads((self.dir / "flight.json").read_text()[:1 << 20])
        except (OSError, ValueError):
            return []
        rows = data.get("candidates") if isinstance(data, dict) else None
        return [c for c in rows[:256] if isinstance(c, dict)] if isinstance(rows, list) else []


def runs(run_dir: Path) -> list[Run]:
    """Every run in `run_dir`, oldest first."""
    if not run_dir.is_dir():
        return []
    return [Run(p.name, p) for p in sorted(run_dir.iterdir())
            if (p / "ledger.sqlite").is_file()]


def open_run(run_dir: Path, run: str | None = None) -> Run:
    """The run called `run` (or a unique prefix of its id), else the latest."""
    found = runs(run_dir)
    if not found:
        raise RunNotFound(f"{run_dir}: no runs here (start one with `descartes-agent run`, "
                          "or point --run-dir at the folder holding them)")
    if run is None:
        return found[-1]
    hits = [r for r in found if r.id == run] or [r for r in found if r.id.startswith(run)]
    if len(hits) != 1:
        some = ", ".join(r.id for r in found[-5:])
        raise RunNotFound(f"run '{run}' {'is ambiguous' if hits else 'not found'} in "
                          f"{run_dir} (recent: {some})")
    return hits[0]


_HASH = re.compile(r"[0-9a-f]{5,40}")


def find(run_dir: Path, ref: str, run: str | None = None) -> tuple[Run, str, str]:
    """(run, branch, commit) named by `ref`: in `run`, else in the latest run, and a commit
    hash is looked for in every run."""
    if run is not None or not _HASH.fullmatch(ref):
        r = open_run(run_dir, run)
        return (r, *r.repo.resolve(ref))
    hits = []
    for r in runs(run_dir):
        try:
            hits.append((r, *r.repo.resolve(ref)))
        except RefError:
            continue
    if not hits:
        raise RefError(f"'{ref}' names no iteration in any run in {run_dir}")
    if len(hits) > 1:
        raise RefError(f"'{ref}' matches commits in {len(hits)} runs: give --run or more "
                       "characters")
    return hits[0]
