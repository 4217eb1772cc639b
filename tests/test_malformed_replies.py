"""`descartes-agent run` with an openai-compatible architect that answers malformed replies
(a JSON header that is a list or a string, a PROPERTIES key that is a tuple, a family that
is a list, a lone surrogate), then `--resume` of the same run after a kill in flight, which
re-serves the recorded replies: both finish, and every malformed reply is a `parse` attempt
fed back to the architect as a repair."""

import json
import sqlite3

from llm_server import Server
from test_cli import run

from agent import llm, runs
from agent.offline import OfflineArchitect
from agent.prompt import Brief
from descartes_core.dataset import SimulationSpec, cached_or_simulated

GOOD = OfflineArchitect(5).propose(Brief(0)).source
FAMILY = '"family": "' + OfflineArchitect(5).propose(Brief(0)).properties["family"] + '"'
HEADER = json.dumps({"name": "fine", "reasoning": "a good one"})
MALFORMED = {
    "header is a list": (f"```json\n[\"a\", 1]\n```\n```python\n{GOOD}```",
                         "not a list"),
    "header is a string": (f'```json\n"my plan"\n```\n```python\n{GOOD}```',
                           "not a string"),
    "unhashable key": ("```python\n" + GOOD.replace("PROPERTIES = {",
                                                    'PROPERTIES = {("a",): 1, ', 1) + "```",
                       "the key ('a',) is a tuple"),
    "unhashable family": ('```json\n{"name": "fam", "properties": {"family": ["x"]}}\n```\n'
                          "```python\n" + GOOD.replace(FAMILY, '"family": ["x"]') + "```",
                          "PROPERTIES['family'] is a list"),
    "lone surrogate": (f'```json\n{{"name": "x\ud800", "reasoning": "\ud800"}}\n```\n'
                       f"```python\n{GOOD}```", "lone surrogate"),
}


def _attempts(run_dir):
    (r,) = runs.runs(run_dir)
    rows = r.ledger.iterations(r.id)
    return r, rows, [a for row in rows for a in row["attempts"]]


def _check(run_dir, rows, attempts, calls):
    # the second passes its check and is trained; on a 2-second budget its training may
    # fail (then it is failed, with the training's class, never a parse failure)
    assert [row["architect"] for row in rows] == ["openai", "openai"]
    assert rows[0]["status"] == "failed" and rows[0]["failure_kind"] == "parse"
    assert rows[1]["failure_kind"] in (None, "timeout", "verifier_failed")
    assert rows[1]["status"] == ("scored" if rows[1]["failure_kind"] is None else "failed")
    assert [a["kind"] for a in attempts] == ["parse"] * 5 + [None]
    for a, (case, (_, words)) in zip(attempts, MALFORMED.items(), strict=False):
        assert words in a["message"], case
    assert rows[1]["repairs"] == 2 and rows[1]["name"] == "fine"
    assert [c["error"] is not None and c["error"].startswith("parse") for c in calls] == [
        True] * 5 + [False]
    assert len((run_dir / llm.RECORDING).read_text().splitlines()) == 6


def test_malformed_replies_are_parse_failures_in_a_run_and_its_resume(monkeypatch, capsys,
                                                                      tmp_path):
    data, _ = cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120, burn_in_ms=100.0))
    script = [reply for reply, _ in MALFORMED.values()]
    script.append(f"```json\n{HEADER}\n```\n```python\n{GOOD}```")
    with Server(script) as server:
        code, out, err = run(
            monkeypatch, capsys, "run", "--data-dir", str(data), "--architect", "openai",
            "--base-url", server.url + "/v1", "--model", "local-coder", "--templates", "",
            "--max-llm-expansions", "2", "--max-repairs", "2", "--time-budget", "0.0005",
            "--sandbox", "process", "--run-dir", str(tmp_path))
        assert code == 0, out + err
        assert "Traceback" not in out + err
        assert "stopped: expansions used after 2 iterations" in out
        r, rows, attempts = _attempts(tmp_path)
        _check(r.dir, rows, attempts, r.ledger.calls(r.id))
        # every parse error went back to the architect as the next prompt's feedback
        prompts = [q["body"]["messages"][1]["content"] for q in server.requests]
        assert "not a list" in prompts[1] and "not a string" in prompts[2]
        assert "lone surrogate" in prompts[5]
        assert r.repo.read("1", "reply.txt").startswith("```python")  # the last reply
        first = [a["message"] for a in attempts]

        # A kill -9 while the second candidate trains leaves its replies in the recording
        # and nothing in the ledger; here both iterations are dropped, so that --resume
        # re-serves every recorded malformed reply by its prompt hash.
        drop_iterations(r, after=0)
        code, out, err = run(monkeypatch, capsys, "run", "--resume", r.id, "--run-dir",
                             str(tmp_path))
        assert code == 0, out + err
        assert "resuming run" in out and "Traceback" not in out + err
        assert len(server.requests) == 6  # every reply came from the recording
    r, rows, attempts = _attempts(tmp_path)
    _check(r.dir, rows, attempts, r.ledger.calls(r.id))
    assert [a["message"] for a in attempts] == first
    assert r.state() == "finished"


def drop_iterations(r, after: int) -> None:
    """What a kill -9 leaves of the iterations numbered above `after`: their replies in the
    recording, nothing in the ledger, the run interrupted."""
    db = sqlite3.connect(r.dir / "ledger.sqlite")
    with db:
        db.execute("DELETE FROM iterations WHERE number > ?", (after,))
        db.execute("DELETE FROM architect_calls")
        db.execute("UPDATE runs SET status = 'interrupted'")
    db.close()
