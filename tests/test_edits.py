"""SEARCH/REPLACE edits: applied to the parent exactly, or refused with the failing hunk."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.edits import MAX_HUNKS, MAX_MARKERS, EditError, apply, hunks
from agent.prompt import ParseError, parse_reply
from descartes_core.contract import template_sources

T5 = template_sources()["T5"]


def edit(search, replace):
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_an_edit_applies_to_the_parent_and_is_recorded_as_one():
    reply = ('```json\n{"name": "t5-slower", "reasoning": "slower modes"}\n```\n'
             + edit("uniform_(0.0, 0.3)\n", "uniform_(0.0, 0.1)\n"))
    p = parse_reply(reply, parent=T5)
    assert p.mode == "edit" and p.name == "t5-slower"
    assert p.source == T5.replace("uniform_(0.0, 0.3)", "uniform_(0.0, 0.1)", 1)
    assert p.properties["family"] == "diagonal_ssm"  # read from the edited source


@pytest.mark.parametrize("hunk, why", [
    (edit("this line is not in T5\n", "x\n"), "matches nothing in the parent"),
    (edit("bias=False)\n", "bias=True)\n"), "matches 2 places"),
    (edit("\n", "x\n"), "empty SEARCH"),
])
def test_an_edit_that_does_not_apply_names_its_hunk(hunk, why):
    good = edit("uniform_(0.0, 0.3)\n", "uniform_(0.0, 0.1)\n")
    with pytest.raises(EditError, match=why):
        apply(T5, hunks(good + hunk))
    with pytest.raises(ParseError) as e:
        parse_reply(good + hunk, parent=T5)
    assert "hunk 2 of 2" in str(e.value) and "were not applied" in str(e.value)
    if "nothing" in why:
        assert "    this line is not in T5" in str(e.value)  # the hunk, quoted


# The regex the line parser replaced (cubic in the marker lines): on small replies, the oracle
OLD_HUNK = re.compile(r"^<{7} SEARCH[ \t]*\n(.*?)^={7}[ \t]*\n(.*?)^>{7} REPLACE[ \t]*$",
                      re.S | re.M)
ENDS = st.sampled_from(["\n"] * 10 + ["\r\n", "\r", "\u2028", "\x0b", "\x85", ""])
LINE = st.tuples(st.sampled_from([
    "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "<<<<<<< SEARCH \t", "======= ",
    ">>>>>>> REPLACE\t ", "<<<<<<<< SEARCH", "<<<<<<< SEARCHx", " =======", "========",
    ">>>>>>> REPLACE x", "", "x = 1", "  y"]), ENDS).map("".join)


def _marker(line: str):
    return st.tuples(st.sampled_from([line] * 4 + [line + " \t", line + "x", line[1:]]),
                     ENDS).map("".join)


HUNKISH = st.tuples(_marker("<<<<<<< SEARCH"), st.lists(LINE, max_size=3),
                    _marker("======="), st.lists(LINE, max_size=3),
                    _marker(">>>>>>> REPLACE")).map(
    lambda p: p[0] + "".join(p[1]) + p[2] + "".join(p[3]) + p[4])


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(st.lists(HUNKISH | LINE, max_size=10).map("".join))
def test_the_line_parser_finds_what_the_regex_found(reply):
    assert hunks(reply) == OLD_HUNK.findall(reply)


def test_a_reply_may_hold_the_markers_of_every_hunk_allowed_and_no_more():
    allowed = edit("a\n", "b\n") * MAX_HUNKS
    assert hunks(allowed) == [("a\n", "b\n")] * MAX_HUNKS
    stray = "=======\n" * (MAX_MARKERS - 3 * MAX_HUNKS + 1)
    with pytest.raises(EditError, match=f"more than {MAX_MARKERS} SEARCH/REPLACE marker"):
        hunks(allowed + stray)


def test_without_a_parent_an_edit_is_no_answer():
    with pytest.raises(ParseError, match="no fenced Python block"):
        parse_reply(edit("a\n", "b\n"))


def test_in_a_run_a_failing_edit_is_a_repair_and_the_child_records_its_parent(
        monkeypatch, capsys, tmp_path):
    import json

    from llm_server import Server
    from test_cli import run

    from agent import runs
    from descartes_core.dataset import SimulationSpec, cached_or_simulated

    data, _ = cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120, burn_in_ms=100.0))
    header = '```json\n{"name": "t5-slower", "reasoning": "slower modes"}\n```\n'
    bad = header + edit("theta = torch.empty(n).uniform_(0.0, 9.9)\n", "x\n")
    good = header + edit("uniform_(0.0, 0.3)\n", "uniform_(0.0, 0.1)\n")
    with Server([bad, good]) as server:
        code, out, err = run(
            monkeypatch, capsys, "run", "--data-dir", str(data), "--architect", "openai",
            "--base-url", server.url + "/v1", "--model", "local-coder", "--templates", "T5",
            "--max-llm-expansions", "1", "--max-repairs", "1", "--time-budget", "0.0005",
            "--finalists", "0", "--sandbox", "process", "--run-dir", str(tmp_path))
        assert code == 0, out + err
        repair_prompt = server.requests[1]["body"]["messages"][1]["content"]
    assert "SEARCH/REPLACE hunk 1 of 1 matches nothing in the parent" in repair_prompt
    assert "    theta = torch.empty(n).uniform_(0.0, 9.9)" in repair_prompt  # quoted back
    (r,) = runs.runs(tmp_path)
    rows = r.ledger.iterations(r.id)
    child = rows[1]
    assert [a["kind"] for a in child["attempts"]] == ["parse", None]
    assert child["lineage"]["parent"] == 1 and child["lineage"]["mode"] == "edit"
    proposal = json.loads(r.repo.read("2", "proposal.json"))
    assert proposal["lineage"]["parent"] == 1
    assert r.repo.read("2") == T5.replace("uniform_(0.0, 0.3)", "uniform_(0.0, 0.1)", 1)
    code, out, _ = run(monkeypatch, capsys, "show", "2", "--run-dir", str(tmp_path))
    assert "lineage: parent #1 (parent: island 0's best (exploit))" in " ".join(out.split())
    code, out, _ = run(monkeypatch, capsys, "diff", "2", "--run-dir", str(tmp_path))
    assert code == 0 and "-        theta = torch.empty(n).uniform_(0.0, 0.3)" in out
    assert "+        theta = torch.empty(n).uniform_(0.0, 0.1)" in out
    code, out, _ = run(monkeypatch, capsys, "log", "--run-dir", str(tmp_path))
    assert code == 0 and out.count("#1 edit") == 1  # the lineage, parent → child, in the log
    code, out, _ = run(monkeypatch, capsys, "log", "--run-dir", str(tmp_path), "--json")
    assert json.loads(out)[1]["lineage"]["parent"] == 1
