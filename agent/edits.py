"""SEARCH/REPLACE edits of a parent's source, as an LLM architect may answer instead of a
whole file:

    <<<<<<< SEARCH
    lines of the parent, exactly
    =======
    what replaces them
    >>>>>>> REPLACE

Each hunk's SEARCH text must occur exactly once in the source as the earlier hunks left
it; one that does not is never skipped silently: the whole edit fails with that hunk,
quoted, and why, and the architect gets it back as a repair.

The reply is read in one pass over its lines, in time linear in its length: a regex with
two lazy groups between line anchors backtracks over every pair of marker lines and took
hours on one reply of many markers (issue 21).
"""

from __future__ import annotations

SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
MAX_HUNKS = 50
MAX_MARKERS = 200
"""Marker lines a reply may hold, nested or stray ones included: MAX_HUNKS hunks need 150."""
_NEXT = {SEARCH: DIVIDER, DIVIDER: REPLACE, REPLACE: SEARCH}


class EditError(ValueError):
    """An edit that does not apply: the message names the failing hunk."""


def _marker(line: str) -> str | None:
    """The marker `line` is (the marker, then spaces or tabs only), or None."""
    for marker in (SEARCH, DIVIDER, REPLACE):
        if line.startswith(marker) and not line[len(marker):].strip(" \t"):
            return marker
    return None


def hunks(reply: str) -> list[tuple[str, str]]:
    """The (search, replace) pairs of a reply, in order; EditError past MAX_MARKERS marker
    lines.

    A hunk is a SEARCH line, then the first divider line after it, then the first REPLACE
    line after that; other marker lines between them are part of the text. Lines end at
    "\\n" only (a marker line ending in "\\r" is text), and a hunk left open is no hunk."""
    found: list[tuple[str, str]] = []
    want, markers, start, search, pos = SEARCH, 0, 0, "", 0
    for line in reply.split("\n"):
        end = pos + len(line)  # where the line's "\n" is
        marker = _marker(line)
        if marker is not None:
            markers += 1
            if markers > MAX_MARKERS:
                raise EditError(f"the reply holds more than {MAX_MARKERS} SEARCH/REPLACE "
                                f"marker lines: send at most {MAX_HUNKS} hunks, or the whole "
                                "file")
        if marker == want:
            if marker == REPLACE:
                found.append((search, reply[start:pos]))
            elif marker == DIVIDER:
                search = reply[start:pos]
            start, want = end + 1, _NEXT[want]
        pos = end + 1
    return found


def _quote(text: str, limit: int = 600) -> str:
    text = text if len(text) <= limit else text[:limit] + "…"
    return "\n".join("    " + line for line in text.splitlines())


def apply(source: str, edits: list[tuple[str, str]]) -> str:
    """`source` with every edit applied in order; EditError at the first that does not."""
    if len(edits) > MAX_HUNKS:
        raise EditError(f"{len(edits)} SEARCH/REPLACE hunks, over {MAX_HUNKS}: send the whole "
                        "file instead")
    for k, (search, replace) in enumerate(edits, 1):
        if not search.strip():
            raise EditError(f"SEARCH/REPLACE hunk {k} of {len(edits)} has an empty SEARCH "
                            "part: quote the parent's lines it replaces")
        found = source.count(search)
        if found != 1:
            why = ("matches nothing in the parent (as the hunks before it left it): copy its "
                   "lines exactly, indentation included" if found == 0 else
                   f"matches {found} places in the parent: quote more lines so it matches one")
            raise EditError(f"SEARCH/REPLACE hunk {k} of {len(edits)} {why}:\n{_quote(search)}")
        source = source.replace(search, replace, 1)
    return source
