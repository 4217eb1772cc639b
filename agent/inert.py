"""Values this project did not write itself, made inert before they are shown.

Candidates are written by adversarial LLMs, and much of what the report and the terminal
show comes from them or from what the sandbox sent back: names, reasoning, properties,
failure messages, log tails, check.json and results.json fields. None of it is trusted to
have the type it should have. `number` accepts only a real, finite int or float (never a
bool, a str or a subclass that could format itself as anything); `fmt` prints it or "–";
`text` turns any value into a plain ``str`` (never a subclass, whose own methods could undo
an escape) without control characters, which a terminal would obey and an HTML parser
reports. The report escapes `text`'s result; the terminal shows it as rich ``Text``, never
as markup. `slug` makes a name safe for an id or a class.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

# C0 controls but tab and newline, DEL, C1, lone surrogates, bidirectional overrides and
# isolates (which reorder what is shown), and the noncharacters an HTML parser rejects
_NONCHARACTERS = "".join(chr(plane << 16 | k) for plane in range(17) for k in (0xFFFE, 0xFFFF))
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
                      f"\ufdd0-\ufdef{_NONCHARACTERS}]")
REPLACEMENT = "\ufffd"
MISSING = "–"


def number(value) -> int | float | None:
    """`value` if it is a real, finite int or float (numpy scalars too), else None."""
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if type(value) is int:  # exactly: not bool, not a subclass with its own __format__
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return None


def fmt(value, digits: int = 3) -> str:
    """A validated number: a float to `digits` places, an int as it is; anything else "–"."""
    n = number(value)
    if n is None:
        return MISSING
    try:
        return f"{n:.{digits}f}" if type(n) is float else str(n)
    except ValueError:  # an int too long to print
        return MISSING


def _plain(value) -> str:
    if isinstance(value, str):
        return str.__str__(value)  # a plain copy: a subclass's methods are never called
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | float | np.number):
        n = number(value)
        return repr(n) if type(n) is float else fmt(n)
    if not isinstance(value, dict | list | tuple):
        return f"<{type(value).__name__}>"
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda o: f"<{type(o).__name__}>")
    except (TypeError, ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def text(value, limit: int | None = None, oneline: bool = False) -> str:
    """Any value as plain text: a str as itself, anything else as JSON, cut to `limit`
    characters, control characters replaced (and newlines too, when `oneline`)."""
    s = _plain(value)
    if limit is not None:
        s = s[:limit]
    s = _CONTROL.sub(REPLACEMENT, s.replace("\r\n", "\n").replace("\r", "\n"))
    return " ".join(s.split()) if oneline else s


def slug(value, limit: int = 60) -> str:
    """A name as [a-z0-9-] only, for an id, an anchor or a class ("x" if nothing is left)."""
    return re.sub(r"[^a-z0-9]+", "-", text(value, 4 * limit).lower()).strip("-")[:limit] or "x"
