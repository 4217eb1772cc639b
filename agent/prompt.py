"""Prompts (text files in agent/prompts/) and the parsing of an architect's reply.

The reply is a JSON header (name, reasoning, properties) and one fenced Python
block holding the whole model file. Parsing is forgiving about fences, prose
around them and a missing or unreadable header; a reply the loop cannot use (no
code, a header that is JSON but not an object, a PROPERTIES literal that is not a
dict of short plain strings, text that is not valid Unicode, code nested beyond
reason) is a ParseError, which goes back to the architect like any other error.

The parsers are total: any str gives a Proposal or a ParseError, never another
exception. Properties come from the source's PROPERTIES literal only — a header
that declares others is ignored, and the proposal says so in its notes and its
reasoning. Names and reasoning are plain, capped text.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from agent import live
from agent.edits import EditError, apply, hunks
from agent.standing import eligible, ranked
from descartes_core.contract import AXES, complete

PROMPTS = Path(__file__).parent / "prompts"
KNOWN_RESULTS = (
    "The owner's data: a Volterra–Laguerre kernel model reached spike correlation 0.549 and "
    "89/160; an LSTM 0.451 and about 20/160; a plain neural ODE trained through 2000 steps "
    "0.012 (vanishing gradients). On this project's data, held-out: Volterra–Laguerre 0.641 "
    "and 93/160 (it is the input baseline); LSTM 0.572 and 80/160 with 81 for the untrained "
    "LSTM (0 above null); the plain NODE 0.006. nRt V, nRt m_T and GABA_A were recovered "
    "by none of them.")


MAX_REPLY = 500_000
"""Characters of a reply; a longer one is a ParseError."""
MAX_NAME = 80
MAX_REASONING = 2000
MAX_DEPTH = 100
"""Nesting of the code's syntax tree (the templates reach 14); deeper is a ParseError, as
the recursive checks downstream (policy, hashing, patterns) would overflow on it."""
MAX_PROPERTIES = 64
MAX_PROPERTY_CHARS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: object) -> str:
    """`text` as a str that encodes to UTF-8: lone surrogates become \\udXXX escapes."""
    if not isinstance(text, str):
        text = str(text) if isinstance(text, (int, float)) else type(text).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def plain(text: object, limit: int, keep: str = "") -> str:
    """Printable text: no control, format or surrogate characters (but those in `keep`),
    at most `limit` characters; a non-str is the empty string."""
    if not isinstance(text, str):
        return ""
    text = text[:limit * 4] if keep else " ".join(text[:limit * 4].split())
    out = "".join(c for c in text if c in keep or not unicodedata.category(c).startswith("C"))
    return out.strip()[:limit]


class ParseError(Exception):
    """A reply the loop cannot use; the message is fed back to the architect."""

    def __init__(self, message: str, reply: str = ""):
        super().__init__(plain(safe_text(message), 2000, keep="\n"))
        self.reply = safe_text(reply[:MAX_REPLY] if isinstance(reply, str) else "")


@dataclass(frozen=True)
class Proposal:
    """A candidate. Whoever builds one, its fields are safe to store, print and commit:
    plain capped name and reasoning, properties a dict of str to str, a source that
    encodes to UTF-8."""

    name: str
    reasoning: str
    properties: dict[str, str]
    source: str
    notes: tuple[str, ...] = ()
    """What the parser ignored or doubted (a header's disagreeing properties, say)."""
    mode: str = "full"
    """full (the reply held the whole file) or edit (SEARCH/REPLACE hunks on the parent)."""

    def __post_init__(self):
        props = self.properties if isinstance(self.properties, dict) else {}
        fields = {
            "name": plain(self.name, MAX_NAME) or "unnamed",
            "reasoning": plain(self.reasoning, MAX_REASONING, keep="\n\t"),
            "properties": {k: v for k, v in props.items()
                           if isinstance(k, str) and isinstance(v, str)},
            "source": _SURROGATE.sub("\ufffd", self.source)
            if isinstance(self.source, str) else "",
            "notes": tuple(plain(n, 500) for n in self.notes if isinstance(n, str))
            if isinstance(self.notes, (tuple, list)) else (),
        }
        for k, v in fields.items():
            object.__setattr__(self, k, v)


@dataclass(frozen=True)
class Brief:
    """Everything an architect is told for one proposal; every architect reads the same."""

    iteration: int
    """Index of the expansion: 0 for the first proposal after the templates."""
    history: tuple[dict, ...] = ()
    """Every recorded iteration (ledger rows), in order."""
    gap: dict | None = None
    """The gap analysis over the scored iterations (None before the first score)."""
    patterns: tuple[dict, ...] = ()
    """DreamCoder patterns mined from the history."""
    exhausted: tuple[str, ...] = ()
    """Families that failed to improve twice: not to be proposed again."""
    parent: tuple[str, str, str] | None = None
    """(name, source, why it was chosen) of the model to improve (agent.population): an
    LLM may answer with SEARCH/REPLACE edits of this source."""
    inspirations: tuple[tuple[str, str, str], ...] = ()
    """(name, source, why) of 1–3 other elites of the archive."""
    tried: frozenset[str] = frozenset()
    """Normalised-source hashes of every candidate so far (see agent.dedup)."""
    feedback: str | None = None
    """Why the previous attempt of this iteration was rejected (repairs only)."""
    objective: str = "beyond_controls"
    """What counts as improvement (agent.config.OBJECTIVES), on selection trials."""
    threshold: float = 0.5
    """Held-out r that counts as recovered."""
    library: tuple[dict, ...] = ()
    """The verified library blocks a candidate may import (agent.library), strongest
    first: name, kind, signature, doc, evidence, uses, strength, and source (the
    strongest few only; None for the rest)."""


def text(name: str) -> str:
    return (PROMPTS / f"{name}.md").read_text()


def system_prompt(threshold: float, allowed_imports) -> str:
    valid = "\n".join(f"  - {axis}: {', '.join(e.value for e in enum)}"
                      for axis, enum in AXES.items())
    return text("system").format(threshold=threshold, known_results=KNOWN_RESULTS,
                                 valid_values=valid, imports=", ".join(sorted(allowed_imports)))


def _count(s: dict, key: str) -> str:
    lo, hi = (s.get("intervals") or {}).get(key) or (None, None)
    return f"{s.get(key)}" if lo is None else f"{s.get(key)} [{lo:g}–{hi:g}]"


def _trained(it: dict) -> str:
    t = it.get("training") or {}
    declared = (it.get("properties") or {}).get("gradient_strategy")
    out = []
    if t.get("strategy") and t["strategy"] != declared:
        out.append(f"trained {t['strategy']}, not {declared}: {t.get('note') or 'a fallback'}")
    if t.get("loss_note"):
        out.append(t["loss_note"])
    if t.get("stopped_by") == "time_budget":
        out.append(f"time budget reached after {t.get('epochs')} epochs")
    return f" ({'; '.join(out)})" if out else ""


def _row(it: dict) -> str:
    s = it.get("scores") or {}
    cats = s.get("by_category", {})
    self_readout = s.get("self_readout")
    return (f"- {it['name']} ({', '.join(f'{k}={v}' for k, v in it['properties'].items())})"
            f"{_trained(it)}: beyond controls {_count(s, 'beyond_controls')}, recovered "
            f"{_count(s, 'recovered')}/160 (controls recover: null {s.get('null_recovered')}, "
            f"random network {s.get('random_recovered')}, inputs {s.get('input_recovered')}), "
            f"above null {s.get('above_null')}, beyond random {s.get('beyond_random')}, beyond "
            f"inputs {s.get('beyond_inputs')}, spike r {s.get('spike_corr', 0):.3f}, "
            f"self-readout {'–' if self_readout is None else f'{self_readout:.2f}'}; "
            + ", ".join(f"{k} {v}" for k, v in cats.items())
            + (f"; {live.events(s)}" if s.get("events") else ""))


def user_prompt(brief: Brief) -> str:
    gap, feedback = brief.gap, brief.feedback
    scored = ranked(list(brief.history), brief.objective)
    failed = [h for h in brief.history if not eligible(h)]
    return text("user").format(
        objective=brief.objective.replace("_", " "),
        best=_row(scored[0]) if scored else "nothing scored yet",
        worked="\n".join(_row(h) for h in scored[:10]) or "nothing yet",
        failed="\n".join(f"- {h['name']}{_trained(h)}: {h.get('failure_kind')}: "
                         f"{(h.get('failure_message') or '')[:800]}"
                         for h in failed[-10:]) or "nothing yet",
        gap=json.dumps({k: v for k, v in (gap or {}).items() if k != "never_recovered"},
                       indent=1) if gap else "no scored iteration yet",
        patterns="\n".join(f"- [{p['type']}, {p['confidence']:.1f}] {p['description']}"
                           for p in brief.patterns)
        or "none yet (they need two scored iterations)",
        exhausted=", ".join(brief.exhausted) or "none",
        parent=(f"### {brief.parent[0]} ({brief.parent[2]})\n```python\n{brief.parent[1]}\n```"
                if brief.parent else "none yet: write a whole file"),
        inspirations="\n\n".join(f"### {name} ({why})\n```python\n{src}\n```"
                                  for name, src, why in brief.inspirations) or "none yet",
        feedback=f"## Your last attempt was rejected\n{feedback}\n" if feedback else "",
        library=_library(brief.library),
    )


def _library(blocks: tuple[dict, ...]) -> str:
    if not blocks:
        return "empty so far (blocks enter once two scored candidates share them)"
    rows = [f"- `{b['signature']}` ({b['kind']}): {b['doc'] or 'no docstring'}; {b['evidence']}"
            for b in blocks]
    sources = [f"### {b['name']}\n```python\n{b['source']}```" for b in blocks if b["source"]]
    return "\n".join(rows) + ("\n\n" + "\n\n".join(sources) if sources else "")


def prompt_hash(system: str, user: str) -> str:
    return hashlib.sha256(f"{system}\0{user}".encode("utf-8", "surrogatepass")).hexdigest()


# Both run in time linear in the reply (tests/test_parsers_linear.py): a body ends at the
# first ``` after its opener, and a later opener is such a ```, so no failed opener is
# followed by another that scans on; \s* runs over the whitespace after one } alone.
_FENCE = re.compile(r"```([a-zA-Z]*)[ \t]*\n(.*?)```", re.S)
_HEADER_END = re.compile(r"\}\s*(?=```)")


def parse_reply(reply: str, parent: str | None = None) -> Proposal:
    """The proposal in an architect's reply (a whole file, or SEARCH/REPLACE edits of
    `parent`); ParseError with a reason otherwise (an edit that does not apply names its
    hunk)."""
    if not isinstance(reply, str):
        raise ParseError(f"the reply is not text but {type(reply).__name__}")
    if len(reply) > MAX_REPLY:
        raise ParseError(f"the reply is {len(reply)} characters long, over {MAX_REPLY}: reply "
                         "with a JSON header and one ```python block holding the whole file",
                         reply)
    bad = _SURROGATE.search(reply)
    if bad:
        raise ParseError(f"the reply is not valid Unicode: a lone surrogate "
                         f"(U+{ord(bad.group()):04X}) at character {bad.start()}; reply with "
                         "plain UTF-8 text", reply)
    blocks = _FENCE.findall(reply)
    code = [body for lang, body in blocks if lang.lower() in ("python", "py", "")
            and "class Model" in body]
    mode, edits = "full", []
    if not code and parent is not None:  # a whole file wins: hunks are read only without one
        try:
            edits = hunks(reply)
            if edits:
                source, mode = apply(parent, edits), "edit"
        except EditError as e:
            raise ParseError(f"{e}\n(the other hunks were not applied either)", reply) from None
    if code:
        source = code[-1].strip() + "\n"
    elif not edits:
        raise ParseError("the reply holds no fenced Python block with `class Model`"
                         + (" and no SEARCH/REPLACE hunks" if parent is not None else "")
                         + ": reply with a JSON header and one ```python block holding the "
                         "whole file" + (", or with SEARCH/REPLACE edits of the parent"
                                         if parent is not None else ""), reply)
    props = _properties(source, reply)
    props = complete(props) if props else props
    meta, notes = _header(reply, blocks), []
    if meta is None:
        meta = {}
        notes.append("the JSON header is not valid JSON and was ignored")
    declared = meta.get("properties")
    if declared is not None and not (isinstance(declared, dict) and all(
            k in props and props[k] == v for k, v in declared.items())):
        notes.append("the header's properties disagree with the source's PROPERTIES and were "
                     "ignored: properties come from the source only")
    name = plain(meta.get("name"), MAX_NAME) or props.get("family") or "unnamed"
    reasoning = plain(meta.get("reasoning"), MAX_REASONING, keep="\n\t")
    if notes:
        suffix = "".join(f"\n[parser: {n}]" for n in notes)
        reasoning = (reasoning[:MAX_REASONING - len(suffix)] + suffix).strip()
    return Proposal(name, reasoning, props, source, tuple(notes), mode)


def _header(reply: str, blocks: list[tuple[str, str]]) -> dict | None:
    """The JSON header: {} when there is none, None when it is not JSON; ParseError when it
    is JSON but not an object."""
    header = None
    for lang, body in blocks:
        if lang.lower() == "json" or (not lang and body.lstrip().startswith("{")):
            header = body
            break
    if header is None:  # a bare JSON object before the code: first "{" to a "}" before ```
        start = reply.find("{")
        end = _HEADER_END.search(reply, start) if start >= 0 else None
        header = reply[start:end.end()] if end else None
    if header is None:
        return {}
    try:
        meta = json.loads(header)
    except (ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(meta, dict):
        raise ParseError(f"the JSON header must be an object with name, reasoning and "
                         f"properties, not {_json_kind(meta)}", reply)
    return meta


def _json_kind(value) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _tree(source: str, reply: str = "") -> ast.Module | None:
    """The source's syntax tree; None if it does not parse (the policy says why); a
    ParseError if it cannot be read at all or nests deeper than MAX_DEPTH."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    except (ValueError, RecursionError, MemoryError) as e:  # surrogates, NULs, deep nesting
        raise ParseError(f"the code cannot be read ({type(e).__name__}): write plain Python "
                         f"nested at most {MAX_DEPTH} levels", reply) from None
    level, depth = [tree], 1
    while level:  # breadth first, without recursion: the depth is the number of levels
        if depth > MAX_DEPTH:
            raise ParseError(f"the code nests deeper than {MAX_DEPTH} levels: write plain, "
                             "flat Python", reply)
        below = []
        for node in level:
            for field in node._fields:
                value = getattr(node, field, None)
                if isinstance(value, list):
                    below.extend(v for v in value if isinstance(v, ast.AST))
                elif isinstance(value, ast.AST):
                    below.append(value)
        level, depth = below, depth + 1
    return tree


def _show(value) -> str:
    try:
        return ascii(value)[:60]
    except Exception:  # a repr that fails is shown by its type
        return type(value).__name__


def _properties(source: str, reply: str = "") -> dict[str, str]:
    tree = _tree(source, reply)
    found: dict[str, str] = {}
    for stmt in tree.body if tree else ():
        if not (isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PROPERTIES" for t in stmt.targets)):
            continue
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError:  # not a literal: the policy says so
            continue
        except (TypeError, RecursionError, MemoryError) as e:  # an unhashable key, say
            raise ParseError(f"PROPERTIES must be a literal dict of strings: line "
                             f"{stmt.lineno} cannot be evaluated ({type(e).__name__}: "
                             f"{_show(str(e))})", reply) from None
        if not isinstance(value, dict):
            continue
        if len(value) > MAX_PROPERTIES:
            raise ParseError(f"PROPERTIES has {len(value)} entries, over {MAX_PROPERTIES}",
                             reply)
        for k, v in value.items():
            if not isinstance(k, str):
                raise ParseError(f"PROPERTIES must be a literal dict of strings: the key "
                                 f"{_show(k)} is a {type(k).__name__}", reply)
            if not isinstance(v, str):
                raise ParseError(f"PROPERTIES must be a literal dict of strings: "
                                 f"PROPERTIES[{_show(k)}] is a {type(v).__name__}", reply)
            for text in (k, v):
                if len(text) > MAX_PROPERTY_CHARS or any(
                        unicodedata.category(c).startswith("C") for c in text):
                    raise ParseError(f"PROPERTIES must hold short plain strings (at most "
                                     f"{MAX_PROPERTY_CHARS} printable characters): "
                                     f"{_show(text)}", reply)
        found = value  # the last assignment, as Python (and the policy) would have it
    return found


def source_properties(source: str) -> dict[str, str]:
    """The PROPERTIES literal of a source, read without running it: {} if absent, not a
    literal dict or the source does not parse; ParseError if it is a dict but not of short
    plain strings, or the source cannot be read at all."""
    if not isinstance(source, str):
        raise ParseError(f"the source is not text but {type(source).__name__}")
    if _SURROGATE.search(source):
        raise ParseError("the source is not valid Unicode (a lone surrogate)")
    found = _properties(source)
    return complete(found) if found else found
