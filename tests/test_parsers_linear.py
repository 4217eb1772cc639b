"""Nothing the driver reads can hang it (issue 21): every parser of LLM replies and of worker
output finishes on a 500 kB adversarial input well inside a guard, and so do `run` and
`run --resume` when the architect serves one.

A regex that backtracks holds the interpreter in C, where no alarm reaches it, so each
input is parsed in a child process that the guard kills. The guards are generous: the parsers
take well under a second here; the SEARCH/REPLACE regex they replace took hours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import Server
from test_malformed_replies import drop_iterations

from agent import edits, runs
from agent.prompt import MAX_REPLY, ParseError, parse_reply, source_properties
from descartes_core.contract import template_sources
from sandbox import protocol

T5 = template_sources()["T5"]
GUARD_S = 30.0
"""Per input, all its parsers together, child start included."""
RUN_GUARD_S = 300.0
"""Per `run` with a template trained on a 2-second budget; the old parser: hours."""
CLI = [sys.executable, "-c", "from agent.cli import main; main()"]
SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH\n", "=======\n", ">>>>>>> REPLACE\n"


def _fill(unit: str, head: str = "", tail: str = "", size: int = MAX_REPLY) -> str:
    """`unit` repeated between `head` and `tail` to `size` characters at most."""
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def _spread(markers: list[str], size: int = MAX_REPLY) -> str:
    """`markers`, one a line, evenly spread over `size` characters of short lines."""
    filler = "x\n" * ((size - sum(map(len, markers))) // len(markers) // 2)
    return "".join(m + filler for m in markers)


REPLIES = {
    # the old regex's worst: SEARCH and divider lines, no REPLACE (cubic in the markers)
    "nested markers": _fill(SEARCH + SEARCH + DIVIDER),
    # under the marker cap, so the line parser reads all of it
    "markers under the cap": _spread([SEARCH, DIVIDER] * 99),
    "markers under the cap, crlf": _spread([SEARCH, DIVIDER] * 99).replace("\n", "\r\n")[
        :MAX_REPLY],
    "unclosed fences": _fill("```python \t\n``\n```py"),
    "pathological whitespace": _fill("}" + " \t\r\n\f\v" * 40, head="{", tail="```"),
    "many braces": _fill("}", head="{"),
    "a very long line": _fill(" \t", head="=======", tail="\n>>>>>>> REPLACE"),
    "a very long fence": _fill("a", head="```"),
    "a deep header": _fill("[", head="```json\n", tail=f"\n```\n```python\n{T5}```"),
    "everything": "".join(_fill(unit, size=MAX_REPLY // 5) for unit in (
        SEARCH + DIVIDER + "```python\n", "}" + " " * 30, "{" + "```\r\n", "[",
        ">>>>>>> REPLACE\t\r\n")),
}
# a worker's response.json (1 MiB at most) and one line of its progress log (64 KiB a read)
RESPONSE_BYTES, PROGRESS_BYTES = protocol.MAX_RESPONSE_BYTES, 1 << 16
RESPONSES = {
    "deep": "[" * RESPONSE_BYTES,
    "digits": "1" * RESPONSE_BYTES,
    "many keys": _fill(', "k": 1', head='{"ok": true', tail="}", size=RESPONSE_BYTES),
    "controls": _fill("\\u0001\u202e", head='{"ok": false, "error": {"kind": "runtime", '
                      '"message": "', tail='"}}', size=RESPONSE_BYTES // 2),
    "a long list": json.dumps({"ok": True, "record": {"history": [
        {"epoch": 1, "train": 0.0, "val": 0.0, "t": 0.0}] * 20_000}}),
    "whitespace": _fill(" \t\n\r", size=RESPONSE_BYTES),
}


def parse_everything(case: str, out: Path) -> list[str]:
    """Each parser's outcome on input `case` (a reply, or a worker's output written under
    `out`): the exception's type where it refused it, else "ok"."""
    def outcome(parse, *args, **kwargs) -> str:
        try:
            parse(*args, **kwargs)
        except (ParseError, edits.EditError, protocol.ProtocolError) as e:
            return type(e).__name__
        return "ok"

    if case in REPLIES:
        reply = REPLIES[case]
        return [outcome(parse_reply, reply), outcome(parse_reply, reply, T5),
                outcome(edits.hunks, reply), outcome(source_properties, reply)]
    data = RESPONSES[case].encode("utf-8", "surrogatepass")
    (out / protocol.RESPONSE).write_bytes(data)
    return [outcome(protocol.read_response, out, task, latent_dim=64, max_params=10**6)
            for task in ("check", "evaluate")] + [
        str(protocol.read_progress_line(data[:PROGRESS_BYTES]))]


def _in_child(case: str, out: Path) -> list[str]:
    code = ("import json, sys; from pathlib import Path; import test_parsers_linear as t; "
            "print(json.dumps(t.parse_everything(sys.argv[1], Path(sys.argv[2]))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-c", code, case, str(out)], env=env,
                              capture_output=True, text=True, timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the parsers did not finish on {case!r} in {GUARD_S:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_adversarial_replies_are_as_large_as_a_reply_may_be():
    for case, reply in REPLIES.items():
        assert MAX_REPLY - 1000 < len(reply) <= MAX_REPLY, case
    lines = REPLIES["markers under the cap"].split("\n")
    assert sum(line + "\n" in (SEARCH, DIVIDER) for line in lines) == 198


@pytest.mark.parametrize("case", sorted(REPLIES))
def test_every_reply_parser_finishes_on_a_500_kB_adversarial_reply(case, tmp_path):
    outcomes = _in_child(case, tmp_path)
    assert all(o in ("ok", "ParseError", "EditError") for o in outcomes), outcomes
    if case == "nested markers":  # an edit of the parent: refused, with a repair to send
        assert outcomes[1:3] == ["ParseError", "EditError"]


@pytest.mark.parametrize("case", sorted(RESPONSES))
def test_every_worker_output_parser_finishes_on_adversarial_output(case, tmp_path):
    assert len(RESPONSES[case].encode("utf-8")) <= RESPONSE_BYTES
    *responses, progress = _in_child(case, tmp_path)
    assert all(o in ("ok", "ProtocolError") for o in responses) and progress == "None"


def test_too_many_marker_lines_are_refused_with_a_repair():
    reply = (SEARCH + DIVIDER) * (edits.MAX_MARKERS // 2 + 1)
    with pytest.raises(ParseError, match=f"more than {edits.MAX_MARKERS} SEARCH/REPLACE "
                       "marker lines: send at most 50 hunks, or the whole file"):
        parse_reply(reply, T5)
    # a whole file wins over hunks, as it always has: its markers are never counted
    p = parse_reply(reply + f"```python\n{T5}```", T5)
    assert p.mode == "full" and p.source == T5


def _cli(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*CLI, *args], capture_output=True, text=True,
                              timeout=RUN_GUARD_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args[:2])}` did not finish in {RUN_GUARD_S:.0f} s")


def _check(run_dir: Path):
    (r,) = runs.runs(run_dir)
    rows = r.ledger.iterations(r.id)
    assert [row["architect"] for row in rows] == ["template", "openai"]
    assert rows[1]["status"] == "failed" and rows[1]["failure_kind"] == "parse"
    assert [a["kind"] for a in rows[1]["attempts"]] == ["parse", "parse"]
    assert all("marker lines" in a["message"] for a in rows[1]["attempts"])
    assert r.state() == "finished"
    return r


def test_a_run_and_its_resume_finish_when_the_architect_serves_an_adversarial_reply(
        tmp_path):
    from descartes_core.dataset import SimulationSpec, cached_or_simulated

    data, _ = cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120, burn_in_ms=100.0))
    with Server([REPLIES["everything"]]) as server:
        done = _cli("run", "--data-dir", str(data), "--architect", "openai", "--base-url",
                    server.url + "/v1", "--model", "local-coder", "--templates", "T5",
                    "--max-llm-expansions", "1", "--max-repairs", "1", "--time-budget",
                    "0.0005", "--finalists", "0", "--sandbox", "process", "--run-dir",
                    str(tmp_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(server.requests) == 2
        # the refusal went back to the architect as a repair, T5 being the parent
        repair = server.requests[1]["body"]["messages"][1]["content"]
        assert f"more than {edits.MAX_MARKERS} SEARCH/REPLACE marker lines" in repair
        r = _check(tmp_path)

        drop_iterations(r, after=1)
        done = _cli("run", "--resume", r.id, "--run-dir", str(tmp_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "resuming run" in done.stdout
        assert len(server.requests) == 2  # both replies came from the recording
    _check(tmp_path)
