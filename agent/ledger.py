"""The ledger: SQLite in the run directory — runs, iterations, finals, architect calls.

An iteration and its architect calls are written in one transaction: after a
crash (kill -9 included) an iteration is in the ledger whole or not at all, so a
resumed run keeps every finished iteration and redoes the one in flight.

Each iteration row carries ``implausible``: why its score is implausible (agent.trust),
derived here from its scores whoever records it, or NULL.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from agent.trust import implausible

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    config TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS iterations (
    run_id TEXT NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    branch TEXT,
    commit_sha TEXT,
    architect TEXT NOT NULL,
    properties TEXT NOT NULL,
    reasoning TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT,
    failure_message TEXT,
    recovered INTEGER,
    above_null INTEGER,
    beyond_inputs INTEGER,
    beyond_controls INTEGER,
    spike_corr REAL,
    training TEXT,
    train_hours REAL NOT NULL DEFAULT 0,
    scores TEXT,
    repairs INTEGER NOT NULL DEFAULT 0,
    attempts TEXT,
    lineage TEXT,
    implausible TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS finals (
    run_id TEXT NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT,
    train_hours REAL NOT NULL DEFAULT 0,
    selection TEXT,
    test TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, number, seed)
);
CREATE TABLE IF NOT EXISTS architect_calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    iteration INTEGER NOT NULL,
    architect TEXT NOT NULL,
    model TEXT,
    prompt_hash TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL
);
"""
ITERATION_FIELDS = ("number", "name", "branch", "commit_sha", "architect", "properties",
                    "reasoning", "status", "failure_kind", "failure_message", "recovered",
                    "above_null", "beyond_inputs", "beyond_controls", "spike_corr", "training",
                    "train_hours", "scores", "repairs", "attempts", "lineage", "implausible")
CALL_FIELDS = ("architect", "model", "prompt_hash", "input_tokens", "output_tokens",
               "cost_usd", "latency_s", "error")
CALL_DEFAULTS = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "latency_s": 0.0}
JSON_FIELDS = ("properties", "scores", "attempts", "training", "lineage")


def _text(value):
    """A str that SQLite can store (lone surrogates become \\udXXX escapes); others as they are."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") \
        if isinstance(value, str) else value


def _json(value) -> str:
    """JSON of a field; keys that cannot be sorted or stored are not a crash."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return json.dumps(value, skipkeys=True, default=repr)


class Ledger:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(iterations)")}
        for name, kind in (("beyond_controls", "INTEGER"), ("training", "TEXT"),
                           ("lineage", "TEXT"), ("implausible", "TEXT")):
            if name not in columns:  # a ledger written before the column existed
                self.db.execute(f"ALTER TABLE iterations ADD COLUMN {name} {kind}")
        if "implausible" not in columns:  # its scores were recorded: flag them now
            self._flag_implausible()

    def close(self) -> None:
        self.db.close()

    def _flag_implausible(self) -> None:
        rows = self.db.execute("SELECT run_id, number, scores FROM iterations "
                               "WHERE scores IS NOT NULL").fetchall()
        for r in rows:
            try:
                why = implausible(json.loads(r["scores"]))
            except (ValueError, RecursionError):
                continue
            if why:
                self.db.execute("UPDATE iterations SET implausible=? WHERE run_id=? AND "
                                "number=?", (why, r["run_id"], r["number"]))

    def start_run(self, run_id: str, config: dict, data_fingerprint: str) -> None:
        now = time.time()
        # the owner's pid and host tell `runs` whether a 'running' run has crashed
        self.db.execute(
            "INSERT INTO runs (id, started, config, data_fingerprint, status, pid, host, updated) "
            "VALUES (?, ?, ?, ?, 'running', ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "status='running', pid=excluded.pid, host=excluded.host, updated=excluded.updated",
            (run_id, now, json.dumps(config, sort_keys=True), data_fingerprint, os.getpid(),
             socket.gethostname(), now))

    def set_status(self, run_id: str, status: str) -> None:
        self.db.execute("UPDATE runs SET status=?, updated=? WHERE id=?",
                        (status, time.time(), run_id))

    def record_iteration(self, run_id: str, iteration: dict, calls: list[dict] = ()) -> None:
        """The iteration and its architect calls, all or nothing."""
        row = {k: _text(iteration.get(k)) for k in ITERATION_FIELDS}
        row["implausible"] = implausible(iteration.get("scores"))
        for k in JSON_FIELDS:
            row[k] = _json(row[k])
        row["train_hours"] = row["train_hours"] or 0.0
        row["repairs"] = row["repairs"] or 0
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                f"INSERT INTO iterations (run_id, {', '.join(ITERATION_FIELDS)}, created) "
                f"VALUES (?, {', '.join('?' * len(ITERATION_FIELDS))}, ?)",
                (run_id, *row.values(), now))
            self._insert_calls(run_id, row["number"], calls, now)
            self.db.execute("UPDATE runs SET updated=? WHERE id=?", (now, run_id))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _insert_calls(self, run_id: str, number: int, calls, now: float) -> None:
        for call in calls:
            self.db.execute(
                f"INSERT INTO architect_calls (run_id, iteration, {', '.join(CALL_FIELDS)}, "
                f"created) VALUES (?, ?, {', '.join('?' * len(CALL_FIELDS))}, ?)",
                (run_id, number, *(_text(call.get(k, CALL_DEFAULTS.get(k))) for k in CALL_FIELDS),
                 now))

    def record_calls(self, run_id: str, number: int, calls: list[dict]) -> None:
        """Architect calls of a candidate that was never run (prepared while others trained,
        when the search stopped): what they cost still counts."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._insert_calls(run_id, number, calls, time.time())
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _rows(self, query: str, run_id: str, json_fields: tuple[str, ...]) -> list[dict]:
        """Rows of `query` as dicts, their JSON fields decoded."""
        out = []
        for r in self.db.execute(query, (run_id,)).fetchall():
            d = dict(r)
            for k in json_fields:
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def iterations(self, run_id: str) -> list[dict]:
        return self._rows("SELECT * FROM iterations WHERE run_id=? ORDER BY number", run_id,
                          JSON_FIELDS)

    def record_final(self, run_id: str, number: int, seed: int, status: str,
                     failure_kind: str | None, train_hours: float, selection: dict | None,
                     test: dict | None) -> None:
        """One finalist's training with one seed, scored on selection and test trials."""
        self.db.execute(
            "INSERT OR REPLACE INTO finals (run_id, number, seed, status, failure_kind, "
            "train_hours, selection, test, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, number, seed, status, _text(failure_kind), train_hours,
             selection and _json(selection), test and _json(test), time.time()))

    def finals(self, run_id: str) -> list[dict]:
        return self._rows("SELECT * FROM finals WHERE run_id=? ORDER BY number, seed", run_id,
                          ("selection", "test"))

    def calls(self, run_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM architect_calls WHERE run_id=? ORDER BY id", (run_id,))]

    def runs(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY started")]
