"""The parsers are total: whatever an architect replies, parse_reply, source_properties and
source_hash give a result or a ParseError, never another exception, and what they give is
safe downstream (JSON, SQLite, git, sorting, the standing).

Property-based: replies generated from nothing, and valid replies built from the real
templates then mutated (truncated, spliced, fences swapped, the header replaced by any JSON
value, PROPERTIES by any literal, surrogates, NULs and control characters inserted, deep
nesting). Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.dedup import source_hash
from agent.ledger import Ledger
from agent.prompt import (
    MAX_NAME,
    MAX_REASONING,
    Brief,
    ParseError,
    Proposal,
    parse_reply,
    prompt_hash,
    source_properties,
)
from agent.standing import standing
from descartes_core.contract import template_sources

TEMPLATES = template_sources()


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


HEX = re.compile(r"[0-9a-f]{64}")
# A ledger shared by every example (a fresh file per example would dominate the run).
LEDGER = Ledger(":memory:")
LEDGER.start_run("fuzz", {}, "fp")
NUMBER = iter(range(1, 10**9))


def _reply(tid: str, header: str | None, prose: bool = False) -> str:
    src = TEMPLATES[tid]
    head = f"```json\n{header}\n```\n" if header is not None else ""
    text = f"{head}```python\n{src}```\n"
    return f"Here is my proposal.\n\n{text}That is all." if prose else text


def _valid_header(tid: str) -> str:
    props = source_properties(TEMPLATES[tid])
    return json.dumps({"name": f"fuzz-{tid}", "reasoning": "because", "properties": props})


# what may be put anywhere in a reply ------------------------------------------------------
NASTY = st.sampled_from([
    "\ud800", "\udfff", "\udc80", "\ud83d", "\x00", "\x1b[2J", "\r", "\x0b", "\u202e",
    "\u200b", "\ufeff", "\uffff", "```", "```python\n", "```json\n", "~~~", "{", "}", "[",
    "]", '"', "\\", "\\ud800", "\n", "class Model", "PROPERTIES = ", "PROPERTIES = {[1]: 2}\n",
    'PROPERTIES = {("a",): 1}\n', "𝔘", "é", "\u0301",
])
ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=200)  # surrogates included
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(alphabet=st.characters(codec=None), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet=st.characters(codec=None), max_size=8), inner, max_size=4),
    max_leaves=12)
# Python literals whose repr literal_eval reads back (no inf, no nan): hashable and not,
# keys of every type
HASHABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.binary(max_size=6)
    | st.complex_numbers(max_magnitude=1e6, allow_nan=False, allow_infinity=False),
    lambda inner: st.tuples(inner) | st.tuples(inner, inner), max_leaves=4)
LITERAL = st.recursive(
    HASHABLE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HASHABLE, inner, max_size=4)
    | st.sets(HASHABLE, max_size=3) | st.tuples(inner, inner), max_leaves=10)


def _deep(kind: str, n: int) -> str:
    if kind == "ifs":  # indented blocks: quadratic text, so fewer levels
        n = min(n, 400)
        return "0\n" + "".join(" " * i + "if x:\n" for i in range(n)) + " " * n + "pass\n"
    return {"parens": lambda: "(" * n + "1" + ")" * n, "lists": lambda: "[" * n + "]" * n,
            "binop": lambda: "1" + " + 1" * n, "unary": lambda: "-" * n + "1",
            "attr": lambda: "a" + ".b" * n, "calls": lambda: "f" + "()" * n,
            "dicts": lambda: '{"a": ' * n + "1" + "}" * n,
            "lambda": lambda: "lambda: " * n + "1"}[kind]()


DEEP = st.builds(_deep, st.sampled_from(["parens", "lists", "binop", "unary", "attr", "calls",
                                         "dicts", "ifs", "lambda"]),
                 st.sampled_from([5, 60, 99, 150, 400, 1200, 5000, 40_000]))


@st.composite
def mutated(draw) -> str:
    """A valid reply from a real template, then one to four mutations."""
    tid = draw(st.sampled_from(sorted(TEMPLATES)))
    reply = _reply(tid, draw(st.sampled_from([_valid_header(tid), None])), draw(st.booleans()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "splice", "insert", "fences", "header",
                                   "header_text", "properties", "properties_text", "deep",
                                   "deep_header", "duplicate", "family"]))
        at = draw(st.integers(0, len(reply)))
        if op == "truncate":
            reply = reply[:at]
        elif op == "splice":  # a piece of another reply, or of this one, put elsewhere
            other = _reply(draw(st.sampled_from(sorted(TEMPLATES))), None)
            a = draw(st.integers(0, len(other)))
            b = draw(st.integers(a, len(other)))
            reply = reply[:at] + other[a:b] + reply[at:]
        elif op == "insert":
            piece = draw(NASTY | ANY_TEXT)
            reply = reply[:at] + piece + reply[at:]
        elif op == "fences":
            old = draw(st.sampled_from(["```python", "```json", "```", "\n```\n"]))
            new = draw(st.sampled_from(["```", "~~~", "```py", "```JSON", "``", "````",
                                        "```python", "```json", "", "```\ud800\n"]))
            reply = reply.replace(old, new, draw(st.sampled_from([1, -1])))
        elif op == "header":  # any JSON value as the header: list, string, number, …
            value = draw(JSON)
            reply = f"```json\n{json.dumps(value)}\n```\n" + reply.split("```python", 1)[-1]
            reply = reply if "```python" in reply else reply + "\n```python\n" + TEMPLATES[tid]
        elif op == "header_text":
            reply = f"```json\n{draw(ANY_TEXT)}\n```\n" + reply
        elif op in ("properties", "properties_text"):
            lit = repr(draw(LITERAL)) if op == "properties" else draw(
                st.sampled_from(["{[1]: 2}", "{1, [2]}", '{("a",): 1, "family": "x"}',
                                 '{"family": ["x"]}', '{"family": {"a": 1}}', "[1, 2]",
                                 '"x"', "dict(a=1)", "{**x}", '{"a": "\\x00"}',
                                 '{"a": "' + "x" * 5000 + '"}', "{" + "1: 1, " * 500 + "}",
                                 '{"family": "\\ud800"}', "1" + "0" * 5000, "{inf: 1}",
                                 '{"a": float("nan")}'])) + draw(
                st.sampled_from(["", "\n"]))
            reply = re.sub(r"PROPERTIES = \{.*?\n\}", lambda m, lit=lit: "PROPERTIES = " + lit,
                           reply, count=1, flags=re.S)
        elif op == "deep":
            reply = reply.replace("class Model", f"X = {draw(DEEP)}\n\n\nclass Model", 1)
        elif op == "deep_header":
            n = draw(st.sampled_from([10, 1000, 100_000]))
            reply = "```json\n" + "[" * n + "]" * n + "\n```\n" + reply
        elif op == "duplicate":
            reply = reply + reply[at:]
        elif op == "family":
            reply = reply.replace('"family": "', '"family": ["', 1)
    return reply


# the properties checked -------------------------------------------------------------------
def _plain(text: str, newlines: bool) -> bool:
    return all((c in "\n\t" and newlines) or not unicodedata.category(c).startswith("C")
               for c in text)


def check_proposal(p: Proposal) -> None:
    assert isinstance(p.name, str) and 0 < len(p.name) <= MAX_NAME and _plain(p.name, False)
    assert isinstance(p.reasoning, str) and len(p.reasoning) <= MAX_REASONING
    assert _plain(p.reasoning, True)
    assert isinstance(p.properties, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in p.properties.items())
    assert isinstance(p.notes, tuple) and all(isinstance(n, str) for n in p.notes)
    for text in (p.name, p.reasoning, p.source, *p.properties, *p.properties.values()):
        text.encode("utf-8")  # SQLite, git and files need valid UTF-8
    json.dumps(p.properties, sort_keys=True)
    assert HEX.fullmatch(source_hash(p.source))
    # what the loop does with a proposal's fields: the ledger, the standing
    it = {"number": next(NUMBER), "name": p.name, "architect": "fuzz", "status": "failed",
          "properties": p.properties, "reasoning": p.reasoning, "attempts": [{"name": p.name}]}
    LEDGER.record_iteration("fuzz", it)
    standing([it, dict(it, number=it["number"] + 1)], "recovered")


def total_parse(reply: str) -> Proposal | None:
    try:
        p = parse_reply(reply)
    except ParseError as e:
        event(f"parse error: {' '.join(str(e).split()[:4])}")
        str(e).encode("utf-8")
        e.reply.encode("utf-8")  # written to reply.txt
        return None
    event("parsed" + (" with notes" if p.notes else ""))
    check_proposal(p)
    return p


def total_properties(source: str) -> None:
    try:
        props = source_properties(source)
    except ParseError as e:
        str(e).encode("utf-8")
        return
    assert isinstance(props, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    json.dumps(props, sort_keys=True)


def total_hash(source: str) -> None:
    assert HEX.fullmatch(source_hash(source))


def _everything(text: str) -> None:
    total_parse(text)
    total_properties(text)
    total_hash(text)


# the tests --------------------------------------------------------------------------------
@fuzz(1800)
@given(mutated())
def test_mutated_template_replies_parse_or_fail_with_a_parse_error(reply):
    _everything(reply)
    m = re.search(r"```python\n(.*?)```", reply, re.S)
    if m:  # the code block alone, as a source
        total_properties(m.group(1))
        total_hash(m.group(1))


@fuzz(900)
@given(st.lists(NASTY | ANY_TEXT | st.builds(json.dumps, JSON) | DEEP
                | st.sampled_from(sorted(TEMPLATES.values())), max_size=6).map("".join))
def test_generated_replies_parse_or_fail_with_a_parse_error(reply):
    _everything(reply)
    _everything(f"```python\n{reply}\nclass Model:\n    pass\n```")


@fuzz(400)
@given(st.sampled_from(sorted(TEMPLATES)), LITERAL, st.booleans())
def test_any_properties_literal_is_read_or_refused(tid, value, in_reply):
    src = re.sub(r"PROPERTIES = \{.*?\n\}", lambda m: f"PROPERTIES = {value!r}",
                 TEMPLATES[tid], count=1, flags=re.S)
    if in_reply:
        p = total_parse(f"```python\n{src}```")
        ok = (isinstance(value, dict) and len(value) <= 64 and all(
            isinstance(k, str) and isinstance(v, str) and _plain(k, False) and _plain(v, False)
            and len(k) <= 200 and len(v) <= 200 for k, v in value.items()))
        assert (p is not None) == (ok or not isinstance(value, dict))
    else:
        total_properties(src)


@fuzz(400)
@given(st.sampled_from(sorted(TEMPLATES)), JSON)
def test_any_json_header_is_used_ignored_or_refused(tid, value):
    reply = f"```json\n{json.dumps(value)}\n```\n```python\n{TEMPLATES[tid]}```"
    p = total_parse(reply)
    assert (p is None) == (not isinstance(value, dict))
    if p is not None:  # properties come from the source, whatever the header says
        assert p.properties == source_properties(TEMPLATES[tid])
        if isinstance(value, dict) and "properties" in value and value["properties"] is not None \
                and value["properties"] != {}:
            agrees = isinstance(value["properties"], dict) and all(
                p.properties.get(k) == v for k, v in value["properties"].items())
            assert bool(p.notes) != agrees


@fuzz(300)
@given(ANY_TEXT, ANY_TEXT)
def test_prompt_hash_takes_any_text(a, b):
    assert HEX.fullmatch(prompt_hash(a, b))


# the known failures, named ------------------------------------------------------------------
T5 = TEMPLATES["T5"]
KNOWN = {
    "header-list": f"```json\n[1, 2]\n```\n```python\n{T5}```",
    "header-string": f'```json\n"a plan"\n```\n```python\n{T5}```',
    "unhashable-key": "```python\n" + T5.replace("PROPERTIES = {", 'PROPERTIES = {("a",): 1, ',
                                                 1) + "```",
    "unhashable-literal": "```python\n" + T5.replace("PROPERTIES = {", "PROPERTIES = {[1]: 2, ",
                                                     1) + "```",
    "family-in-source": "```python\n" + T5.replace('"family": "diagonal_ssm"',
                                                   '"family": ["x"]') + "```",
    "surrogate": f'```json\n{{"name": "x"}}\n```\n```python\n# \ud800\n{T5}```',
    "deep": f"```python\nX = {'1' + ' + 1' * 3000}\n{T5}```",
    "nested-too-far": f"```python\nX = {'[' * 150 + ']' * 150}\n{T5}```",
}


@pytest.mark.parametrize("case", sorted(KNOWN))
def test_the_known_malformed_replies_are_parse_errors(case):
    assert '"family": ["x"]' in KNOWN["family-in-source"]
    with pytest.raises(ParseError) as e:
        parse_reply(KNOWN[case])
    e.value.reply.encode("utf-8")


def test_a_header_with_other_properties_is_ignored_and_the_proposal_says_so():
    header = json.dumps({"name": "sneaky", "reasoning": "r", "properties": {"family": ["x"]}})
    p = parse_reply(f"```json\n{header}\n```\n```python\n{T5}```")
    assert p.name == "sneaky" and p.properties == source_properties(T5)
    assert p.notes and "ignored" in p.notes[0] and "[parser:" in p.reasoning
    agreeing = json.dumps({"name": "fair", "properties": {"family": "diagonal_ssm"}})
    assert parse_reply(f"```json\n{agreeing}\n```\n```python\n{T5}```").notes == ()


def test_names_and_reasoning_are_plain_capped_text():
    header = json.dumps({"name": "a\nb\x1b[31m\u202e" + "n" * 200,
                         "reasoning": "\ud800line\x00 one\nline two" + "r" * 5000})
    p = parse_reply(f"```json\n{header}\n```\n```python\n{T5}```")
    assert p.name.startswith("a b[31m") and len(p.name) == MAX_NAME
    assert p.reasoning.startswith("line one\nline two") and len(p.reasoning) == MAX_REASONING
    weird = json.dumps({"name": ["x"], "reasoning": {"a": 1}})
    p = parse_reply(f"```json\n{weird}\n```\n```python\n{T5}```")
    assert p.name == "diagonal_ssm" and p.reasoning == ""


def test_any_proposal_is_safe_whoever_builds_it():
    p = Proposal("x\ud800\n", 5, {("a",): 1, "family": ["x"], "ok": "yes"}, "x = '\ud800'\n")
    assert (p.name, p.reasoning, p.properties) == ("x", "", {"ok": "yes"})
    p.source.encode("utf-8")


def test_the_ledger_and_the_repository_store_any_text(tmp_path):
    from agent.repository import ModelRepository

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.start_run("r", {}, "fp")
    ledger.record_iteration("r", {"number": 1, "name": "x\ud800", "architect": "a\udfff",
                                  "status": "failed", "reasoning": "\ud800",
                                  "failure_message": "boom \udc80",
                                  "properties": {("a",): 1, "b": 2, 3: "c"}},
                            [{"architect": "a", "prompt_hash": "h", "error": "\ud800"}])
    [row] = ledger.iterations("r")
    assert row["name"] == "x\\ud800" and row["properties"]["b"] == 2
    assert ledger.calls("r")[0]["error"] == "\\ud800"
    repo = ModelRepository(tmp_path / "repo")
    repo.commit("iter/0001-x", {"reply.txt": "a \ud800 b", "model.py": "x = 1\n"},
                "iteration 1: x\ud800")
    assert repo.read("1", "reply.txt") == "a \\ud800 b"


def test_an_unforeseen_parser_failure_is_still_a_parse_error(monkeypatch):
    from agent import llm

    def broken(text, parent=None):
        raise KeyError("a bug")

    monkeypatch.setattr(llm, "parse_reply", broken)
    arch = llm.LLMArchitect("fake", lambda s, u: llm.Reply("reply", "m"), None)
    with pytest.raises(ParseError, match="could not be read"):
        arch.propose(Brief(0))
    assert arch.drain_calls()[0]["error"] == "parse: KeyError"
