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
"""

from __future__ import annotations

import re

HUNK = re.compile(r"^<{7} SEARCH[ \t]*\n(.*?)^={7}[ \t]*\n(.*?)^>{7} REPLACE[ \t]*$",
                  re.S | re.M)
MAX_HUNKS = 50


class EditError(ValueError):
    """An edit that does not apply: the message names the failing hunk."""


def hunks(reply: str) -> list[tuple[str, str]]:
    """The (search, replace) pairs of a reply, in order."""
    return [(s, r) for s, r in HUNK.findall(reply)]


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
