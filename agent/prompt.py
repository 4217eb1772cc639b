"""Prompts (text files in agent/prompts/) and the parsing of an architect's reply.

The reply is a JSON header (name, reasoning, properties) and one fenced Python
block holding the whole model file. Parsing is forgiving about fences, prose
around them and a missing header (the properties are then read from the
source's PROPERTIES literal); a reply without code is a ParseError, which goes
back to the architect like any other error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from descartes_core.contract import AXES

PROMPTS = Path(__file__).parent / "prompts"
KNOWN_RESULTS = (
    "The owner's data: a Volterra–Laguerre kernel model reached spike correlation 0.549 and "
    "89/160; an LSTM 0.451 and about 20/160; a plain neural ODE trained through 2000 steps "
    "0.012 (vanishing gradients). On this project's data, held-out: Volterra–Laguerre 0.641 "
    "and 93/160 (it is the input baseline); LSTM 0.572 and 80/160 with 81 for the untrained "
    "LSTM (0 above null); the plain NODE 0.006. nRt V, nRt m_T and GABA_A were recovered "
    "by none of them.")


class ParseError(Exception):
    """A reply the loop cannot use; the message is fed back to the architect."""

    def __init__(self, message: str, reply: str = ""):
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class Proposal:
    name: str
    reasoning: str
    properties: dict
    source: str


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
    best_sources: tuple[tuple[str, str], ...] = ()
    """(name, source) of the best one or two models so far."""
    tried: frozenset[str] = frozenset()
    """Normalised-source hashes of every candidate so far (see agent.dedup)."""
    feedback: str | None = None
    """Why the previous attempt of this iteration was rejected (repairs only)."""
    objective: str = "recovered"
    """What counts as improvement: recovered, above_null or beyond_inputs."""
    threshold: float = 0.5
    """Held-out r that counts as recovered."""


def text(name: str) -> str:
    return (PROMPTS / f"{name}.md").read_text()


def system_prompt(threshold: float, allowed_imports) -> str:
    valid = "\n".join(f"  - {axis}: {', '.join(e.value for e in enum)}"
                      for axis, enum in AXES.items())
    return text("system").format(threshold=threshold, known_results=KNOWN_RESULTS,
                                 valid_values=valid, imports=", ".join(sorted(allowed_imports)))


def _row(it: dict) -> str:
    s = it.get("scores") or {}
    cats = s.get("by_category", {})
    return (f"- {it['name']} ({', '.join(f'{k}={v}' for k, v in it['properties'].items())}): "
            f"recovered {s.get('recovered')}/160, above null {s.get('above_null')}, beyond inputs "
            f"{s.get('beyond_inputs')}, spike r {s.get('spike_corr', 0):.3f}; "
            + ", ".join(f"{k} {v}" for k, v in cats.items()))


def user_prompt(brief: Brief) -> str:
    gap, feedback = brief.gap, brief.feedback
    scored = sorted((h for h in brief.history if h.get("scores")),
                    key=lambda h: -(h["scores"].get(brief.objective) or 0))
    failed = [h for h in brief.history if not h.get("scores")]
    return text("user").format(
        objective=brief.objective.replace("_", " "),
        best=_row(scored[0]) if scored else "nothing scored yet",
        worked="\n".join(_row(h) for h in scored[:10]) or "nothing yet",
        failed="\n".join(f"- {h['name']}: {h.get('failure_kind')}: "
                         f"{(h.get('failure_message') or '')[:800]}"
                         for h in failed[-10:]) or "nothing yet",
        gap=json.dumps({k: v for k, v in (gap or {}).items() if k != "never_recovered"},
                       indent=1) if gap else "no scored iteration yet",
        patterns="\n".join(f"- [{p['type']}, {p['confidence']:.1f}] {p['description']}"
                           for p in brief.patterns)
        or "none yet (they need two scored iterations)",
        exhausted=", ".join(brief.exhausted) or "none",
        best_sources="\n\n".join(f"### {name}\n```python\n{src}\n```"
                                 for name, src in brief.best_sources) or "none yet",
        feedback=f"## Your last attempt was rejected\n{feedback}\n" if feedback else "",
    )


def prompt_hash(system: str, user: str) -> str:
    return hashlib.sha256(f"{system}\0{user}".encode()).hexdigest()


_FENCE = re.compile(r"```([a-zA-Z]*)[ \t]*\n(.*?)```", re.S)


def parse_reply(reply: str) -> Proposal:
    """The proposal in an architect's reply; ParseError with a reason otherwise."""
    blocks = _FENCE.findall(reply)
    code = [body for lang, body in blocks if lang.lower() in ("python", "py", "")
            and "class Model" in body]
    if not code:
        raise ParseError("the reply holds no fenced Python block with `class Model`: reply with "
                         "a JSON header and one ```python block holding the whole file", reply)
    source = code[-1].strip() + "\n"
    header = None
    for lang, body in blocks:
        if lang.lower() == "json" or (not lang and body.lstrip().startswith("{")):
            header = body
            break
    if header is None:
        m = re.search(r"\{.*?\}\s*(?=```)", reply, re.S)  # a bare JSON object before the code
        header = m.group(0) if m else None
    meta = {}
    if header is not None:
        try:
            meta = json.loads(header)
        except json.JSONDecodeError:
            meta = {}
    props = meta.get("properties") if isinstance(meta.get("properties"), dict) else None
    if props is None:
        props = source_properties(source)
    name = str(meta.get("name") or props.get("family") or "unnamed")[:80]
    return Proposal(name, str(meta.get("reasoning") or "")[:2000], props, source)


def source_properties(source: str) -> dict:
    """The PROPERTIES literal of a source, read without running it ({} if absent)."""
    try:
        for stmt in ast.parse(source).body:
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "PROPERTIES" for t in stmt.targets):
                value = ast.literal_eval(stmt.value)
                return value if isinstance(value, dict) else {}
    except (SyntaxError, ValueError):
        pass
    return {}
